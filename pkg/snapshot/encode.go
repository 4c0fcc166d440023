package snapshot

import (
	"encoding/binary"
	"math"
	"time"
)

// A record is a msgpack map from small integer field numbers to values
// (docs/snapshot-format.md lists them). Fields are only ever added, never
// renumbered, so a newer reader decodes every older record. The encoder is
// written out by hand: reflection-based msgpack costs ~0.7 µs a record, this
// ~0.1 µs.
const (
	fKind = iota + 1
	fID
	fProtocol
	fState
	fWorker
	fGeneration
	fRemote
	fLocal
	fBackend
	fCreated
	fLastActive
	fTarget
	fSubprotocol
	fExtensions
	fHeaders
	fStreamID
	fQUICConnIDs
	fMsgsIn
	fMsgsOut
	fBytesIn
	fBytesOut
	fPendingIn
	fPendingOut
	fMethod
	fBody
	fPriority
	fNetwork
	fFD
	fName
	fSlot
	fRelease
	fStatus
	fAttrs
)

// AppendMsgpack appends r's msgpack encoding to b. Credential headers are
// written as Redacted when redact is set. r should be valid (Validate).
func (r *Record) AppendMsgpack(b []byte, redact bool) []byte {
	b, _ = r.appendMsgpack(b, redact)
	return b
}

// appendMsgpack is AppendMsgpack that also reports whether every attribute
// fits schema 1 (attrOK), so a Writer ranges over the map once.
func (r *Record) appendMsgpack(b []byte, redact bool) ([]byte, bool) {
	// map16 with the count patched at the end: valid msgpack, and one pass.
	// The field helpers take and return b rather than closing over it, so
	// that b stays in registers.
	start := len(b)
	b = append(b, 0xde, 0, 0)
	var n uint16
	ok := true
	b, n = putStr(b, n, fKind, string(r.Kind))
	b, n = putStr(b, n, fID, r.ID)
	b, n = putStr(b, n, fProtocol, r.Protocol)
	b, n = putStr(b, n, fState, string(r.State))
	b, n = putInt(b, n, fWorker, int64(r.Worker))
	b, n = putUint(b, n, fGeneration, r.Generation)
	b, n = putStr(b, n, fRemote, r.Remote)
	b, n = putStr(b, n, fLocal, r.Local)
	b, n = putStr(b, n, fBackend, r.Backend)
	b, n = putInt(b, n, fCreated, timeNanos(r.Created))
	b, n = putInt(b, n, fLastActive, timeNanos(r.LastActive))
	b, n = putStr(b, n, fTarget, r.Target)
	b, n = putStr(b, n, fSubprotocol, r.Subprotocol)
	b, n = putStrs(b, n, fExtensions, r.Extensions)
	if len(r.Headers) > 0 {
		// One flat array: name, value, name, value, ...
		b = append(b, fHeaders)
		b = appendArrayLen(b, 2*len(r.Headers))
		for _, h := range r.Headers {
			b = appendStr(b, h.Name)
			if redact && credential(h.Name) {
				b = appendStr(b, Redacted)
			} else {
				b = appendStr(b, h.Value)
			}
		}
		n++
	}
	b, n = putUint(b, n, fStreamID, r.StreamID)
	b, n = putStrs(b, n, fQUICConnIDs, r.QUICConnIDs)
	b, n = putUint(b, n, fMsgsIn, r.MsgsIn)
	b, n = putUint(b, n, fMsgsOut, r.MsgsOut)
	b, n = putUint(b, n, fBytesIn, r.BytesIn)
	b, n = putUint(b, n, fBytesOut, r.BytesOut)
	b, n = putBin(b, n, fPendingIn, r.PendingIn)
	b, n = putBin(b, n, fPendingOut, r.PendingOut)
	b, n = putStr(b, n, fMethod, r.Method)
	b, n = putBin(b, n, fBody, r.Body)
	b, n = putInt(b, n, fPriority, int64(r.Priority))
	b, n = putStr(b, n, fNetwork, r.Network)
	b, n = putInt(b, n, fFD, int64(r.FD))
	b, n = putStr(b, n, fName, r.Name)
	b, n = putInt(b, n, fSlot, int64(r.Slot))
	b, n = putStr(b, n, fRelease, r.Release)
	b, n = putStr(b, n, fStatus, r.Status)
	if len(r.Attrs) > 0 {
		b = append(b, fAttrs)
		b = appendMapLen(b, len(r.Attrs))
		for k, v := range r.Attrs {
			ok = ok && attrOK(k, v)
			b = appendStr(b, k)
			b = appendStr(b, v)
		}
		n++
	}
	binary.BigEndian.PutUint16(b[start+1:], n)
	return b, ok
}

func putStr(b []byte, n uint16, f byte, v string) ([]byte, uint16) {
	if v == "" {
		return b, n
	}
	return appendStr(append(b, f), v), n + 1
}

func putUint(b []byte, n uint16, f byte, v uint64) ([]byte, uint16) {
	if v == 0 {
		return b, n
	}
	return appendUint(append(b, f), v), n + 1
}

func putInt(b []byte, n uint16, f byte, v int64) ([]byte, uint16) {
	if v == 0 {
		return b, n
	}
	return appendInt(append(b, f), v), n + 1
}

func putBin(b []byte, n uint16, f byte, v []byte) ([]byte, uint16) {
	if len(v) == 0 {
		return b, n
	}
	return appendBin(append(b, f), v), n + 1
}

func putStrs(b []byte, n uint16, f byte, v []string) ([]byte, uint16) {
	if len(v) == 0 {
		return b, n
	}
	b = appendArrayLen(append(b, f), len(v))
	for _, s := range v {
		b = appendStr(b, s)
	}
	return b, n + 1
}

// MarshalMsgpack returns r's msgpack encoding, credentials included (the
// msgpack.Marshaler interface of vmihailenco/msgpack).
func (r *Record) MarshalMsgpack() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r.AppendMsgpack(nil, false), nil
}

// timeNanos is t in Unix nanoseconds; the zero time is 0 (not written).
func timeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func appendBin(b []byte, v []byte) []byte {
	switch n := len(v); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, v...)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	}
	return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
