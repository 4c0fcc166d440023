package snapshot

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/zdtools/zd/pkg/msgpackcheck"
)

// maxDepth bounds the nesting msgpackcheck lets through: a chunk is an array
// of record maps whose deepest values are the header and attribute lists.
const maxDepth = 4

// UnmarshalMsgpack decodes one record written by AppendMsgpack (the
// msgpack.Unmarshaler interface of vmihailenco/msgpack). The input is vetted
// with msgpackcheck first; a record that does not fit schema 1 is an error
// wrapping ErrSchema.
func (r *Record) UnmarshalMsgpack(b []byte) error {
	if err := msgpackcheck.Check(b, maxDepth); err != nil {
		return fmt.Errorf("%w: %v", ErrSchema, err)
	}
	d := decoder{b: b}
	if err := d.record(r); err != nil {
		return err
	}
	return r.Validate()
}

// decoder reads msgpack from b at p. It is only given input msgpackcheck
// passed, but checks every bound anyway: it must never panic.
//
// Strings and byte fields are cut from s and own, one copy of the chunk each
// made when the chunk was opened: a record costs a handful of allocations
// instead of one per field, and keeps its chunk's memory alive while it
// lives (a chunk is ChunkSize bytes, 256 KiB by default).
type decoder struct {
	b   []byte
	p   int
	s   string // b as a string, or "" to convert field by field
	own []byte // a copy of b that byte fields may alias, or nil
}

// newChunkDecoder decodes a whole chunk, sharing its memory among records.
func newChunkDecoder(b []byte) decoder {
	own := append([]byte(nil), b...)
	return decoder{b: b, s: string(b), own: own}
}

var errShort = fmt.Errorf("%w: value runs past the end of its chunk", ErrSchema)

func (d *decoder) byte() (byte, error) {
	if d.p >= len(d.b) {
		return 0, errShort
	}
	c := d.b[d.p]
	d.p++
	return c, nil
}

func (d *decoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.p) {
		return nil, errShort
	}
	v := d.b[d.p : d.p+int(n)]
	d.p += int(n)
	return v, nil
}

func (d *decoder) be(n int) (uint64, error) {
	v, err := d.take(uint64(n))
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(v[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(v)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(v)), nil
	}
	return binary.BigEndian.Uint64(v), nil
}

// arrayLen reads an array header.
func (d *decoder) arrayLen() (int, error) {
	c, err := d.byte()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case c == 0xdc:
		n, err = d.be(2)
	case c == 0xdd:
		n, err = d.be(4)
	default:
		return 0, fmt.Errorf("%w: want an array, have type byte %#02x", ErrSchema, c)
	}
	return int(n), err
}

func (d *decoder) mapLen() (int, error) {
	c, err := d.byte()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	case c == 0xde:
		n, err = d.be(2)
	case c == 0xdf:
		n, err = d.be(4)
	default:
		return 0, fmt.Errorf("%w: want a map, have type byte %#02x", ErrSchema, c)
	}
	return int(n), err
}

// rawStr returns a string's bytes without copying them.
func (d *decoder) rawStr() ([]byte, error) {
	c, err := d.byte()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, err = d.be(1)
	case c == 0xda:
		n, err = d.be(2)
	case c == 0xdb:
		n, err = d.be(4)
	default:
		return nil, fmt.Errorf("%w: want a string, have type byte %#02x", ErrSchema, c)
	}
	if err != nil {
		return nil, err
	}
	if n > MaxString {
		return nil, fmt.Errorf("%w: a string of %d bytes, more than %d", ErrSchema, n, MaxString)
	}
	return d.take(n)
}

func (d *decoder) str() (string, error) {
	v, err := d.rawStr()
	if err != nil || len(v) == 0 {
		return "", err
	}
	if d.s != "" {
		end := d.p
		return d.s[end-len(v) : end], nil
	}
	return string(v), nil
}

func (d *decoder) bin() ([]byte, error) {
	c, err := d.byte()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch c {
	case 0xc4:
		n, err = d.be(1)
	case 0xc5:
		n, err = d.be(2)
	case 0xc6:
		n, err = d.be(4)
	default:
		return nil, fmt.Errorf("%w: want bytes, have type byte %#02x", ErrSchema, c)
	}
	if err != nil {
		return nil, err
	}
	if n > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrSchema, n, MaxBytes)
	}
	v, err := d.take(n)
	if err != nil || n == 0 {
		return nil, err
	}
	if d.own != nil {
		// Capped, so that appending to one field never overwrites the next.
		return d.own[d.p-len(v) : d.p : d.p], nil
	}
	return append([]byte(nil), v...), nil
}

func (d *decoder) int() (int64, error) {
	c, err := d.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	var v uint64
	switch c {
	case 0xcc, 0xd0:
		v, err = d.be(1)
	case 0xcd, 0xd1:
		v, err = d.be(2)
	case 0xce, 0xd2:
		v, err = d.be(4)
	case 0xcf, 0xd3:
		v, err = d.be(8)
	default:
		return 0, fmt.Errorf("%w: want an integer, have type byte %#02x", ErrSchema, c)
	}
	if err != nil {
		return 0, err
	}
	switch c {
	case 0xd0:
		return int64(int8(v)), nil
	case 0xd1:
		return int64(int16(v)), nil
	case 0xd2:
		return int64(int32(v)), nil
	case 0xd3:
		return int64(v), nil
	case 0xcf:
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("%w: integer %d out of range", ErrSchema, v)
		}
	}
	return int64(v), nil
}

func (d *decoder) uint() (uint64, error) {
	if d.p < len(d.b) && d.b[d.p] == 0xcf {
		d.p++
		return d.be(8)
	}
	v, err := d.int()
	if err == nil && v < 0 {
		return 0, fmt.Errorf("%w: negative value %d for a counter", ErrSchema, v)
	}
	return uint64(v), err
}

// small reads an int field that fits a Go int on every platform (pids,
// fds, slots, priorities).
func (d *decoder) small() (int, error) {
	v, err := d.int()
	if err == nil && (v > math.MaxInt32 || v < math.MinInt32) {
		return 0, fmt.Errorf("%w: %d out of range", ErrSchema, v)
	}
	return int(v), err
}

func (d *decoder) strs() ([]string, error) {
	n, err := d.arrayLen()
	if err != nil {
		return nil, err
	}
	if n > MaxList {
		return nil, fmt.Errorf("%w: a list of %d, more than %d", ErrSchema, n, MaxList)
	}
	l := make([]string, n)
	for i := range l {
		if l[i], err = d.str(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Kind, state and protocol strings repeat in every record: match them
// against the known values instead of allocating each.
var commonProtocols = []string{"http/1.1", "h2", "h2c", "h3", "ws", "ws-h2", "ws-h3", "tcp", "udp", "quic", "unix"}

func (d *decoder) kind() (Kind, error) {
	v, err := d.rawStr()
	for _, k := range Kinds {
		if string(v) == string(k) {
			return k, err
		}
	}
	return Kind(v), err
}

func (d *decoder) state() (State, error) {
	v, err := d.rawStr()
	for _, s := range [...]State{StateActive, StateIdle, StateClosing, StateHeld, StateStarting, StateReady, StateDraining, StateStopping, StateListening} {
		if string(v) == string(s) {
			return s, err
		}
	}
	return State(v), err
}

func (d *decoder) protocol() (string, error) {
	v, err := d.rawStr()
	for _, p := range commonProtocols {
		if string(v) == p {
			return p, err
		}
	}
	return string(v), err
}

func unixTime(ns int64, err error) (time.Time, error) {
	if err != nil || ns == 0 {
		return time.Time{}, err
	}
	return time.Unix(0, ns).UTC(), nil
}

// record decodes one record map into r, which it resets first.
func (d *decoder) record(r *Record) error {
	*r = Record{}
	n, err := d.mapLen()
	if err != nil {
		return err
	}
	var seen uint64
	for range n {
		f, err := d.int()
		if err != nil {
			return err
		}
		if f < 1 || f > maxFieldID {
			return fmt.Errorf("%w: unknown field number %d", ErrSchema, f)
		}
		if seen&(1<<f) != 0 {
			return fmt.Errorf("%w: field number %d twice", ErrSchema, f)
		}
		seen |= 1 << f
		if err := d.field(r, int(f)); err != nil {
			return fmt.Errorf("field %s: %w", fieldNames[f], err)
		}
	}
	return nil
}

func (d *decoder) field(r *Record, f int) (err error) {
	switch f {
	case fKind:
		r.Kind, err = d.kind()
	case fID:
		r.ID, err = d.str()
	case fProtocol:
		r.Protocol, err = d.protocol()
	case fState:
		r.State, err = d.state()
	case fWorker:
		r.Worker, err = d.small()
	case fGeneration:
		r.Generation, err = d.uint()
	case fRemote:
		r.Remote, err = d.str()
	case fLocal:
		r.Local, err = d.str()
	case fBackend:
		r.Backend, err = d.str()
	case fCreated:
		r.Created, err = unixTime(d.int())
	case fLastActive:
		r.LastActive, err = unixTime(d.int())
	case fTarget:
		r.Target, err = d.str()
	case fSubprotocol:
		r.Subprotocol, err = d.str()
	case fExtensions:
		r.Extensions, err = d.strs()
	case fHeaders:
		var n int
		if n, err = d.arrayLen(); err != nil {
			return err
		}
		if n%2 != 0 || n/2 > MaxList {
			return fmt.Errorf("%w: %d header names and values (an odd number, or more than %d headers)", ErrSchema, n, MaxList)
		}
		r.Headers = make([]HeaderField, n/2)
		for i := range r.Headers {
			if r.Headers[i].Name, err = d.str(); err != nil {
				return err
			}
			if r.Headers[i].Value, err = d.str(); err != nil {
				return err
			}
		}
	case fStreamID:
		r.StreamID, err = d.uint()
	case fQUICConnIDs:
		r.QUICConnIDs, err = d.strs()
	case fMsgsIn:
		r.MsgsIn, err = d.uint()
	case fMsgsOut:
		r.MsgsOut, err = d.uint()
	case fBytesIn:
		r.BytesIn, err = d.uint()
	case fBytesOut:
		r.BytesOut, err = d.uint()
	case fPendingIn:
		r.PendingIn, err = d.bin()
	case fPendingOut:
		r.PendingOut, err = d.bin()
	case fMethod:
		r.Method, err = d.str()
	case fBody:
		r.Body, err = d.bin()
	case fPriority:
		r.Priority, err = d.small()
	case fNetwork:
		r.Network, err = d.str()
	case fFD:
		r.FD, err = d.small()
	case fName:
		r.Name, err = d.str()
	case fSlot:
		r.Slot, err = d.small()
	case fRelease:
		r.Release, err = d.str()
	case fStatus:
		r.Status, err = d.str()
	case fAttrs:
		var n int
		if n, err = d.mapLen(); err != nil {
			return err
		}
		if n > MaxList {
			return fmt.Errorf("%w: %d attributes, more than %d", ErrSchema, n, MaxList)
		}
		r.Attrs = make(map[string]string, n)
		for range n {
			k, err := d.str()
			if err != nil {
				return err
			}
			v, err := d.str()
			if err != nil {
				return err
			}
			r.Attrs[k] = v
		}
	}
	return err
}

// fieldNames are the JSON names of the field numbers, for error messages.
var fieldNames = [...]string{"", "kind", "id", "protocol", "state", "worker", "generation", "remote", "local",
	"backend", "created", "last_active", "target", "subprotocol", "extensions", "headers", "stream_id",
	"quic_conn_ids", "msgs_in", "msgs_out", "bytes_in", "bytes_out", "pending_in", "pending_out", "method",
	"body", "priority", "network", "fd", "name", "slot", "release", "status", "attrs"}
