package control

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/zdtools/zd/pkg/msgpackcheck"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// WriteFrame encodes v as msgpack and writes it as one frame: a 4-byte
// big-endian length, then the body, in a single Write. v should encode to a
// msgpack map (a struct or a map). It fails without writing anything if the
// body is larger than DefaultMaxFrameSize (the error wraps ErrFrameTooLarge).
func WriteFrame(w io.Writer, v any) error {
	return writeFrame(w, DefaultMaxFrameSize, v)
}

func writeFrame(w io.Writer, max int, v any) error {
	b, err := encodeFrame(max, v)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write control frame: %w", err)
	}
	return nil
}

// encodeFrame returns v as a whole frame, header included.
func encodeFrame(max int, v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode control frame: %w", err)
	}
	b := buf.Bytes()
	n := len(b) - 4
	if n > max {
		return nil, fmt.Errorf("write control frame: %w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b, nil
}

// ReadFrame reads one frame from r and decodes its msgpack body into v. It
// returns io.EOF if r ends before the first byte, io.ErrUnexpectedEOF if it
// ends inside a frame, an error wrapping ErrFrameTooLarge (without reading
// the body) if the length is above max, and an error for an empty body, a
// body that is not a msgpack map, one that does not decode into v, or one
// with bytes after the map. A max of 0 or less means DefaultMaxFrameSize.
func ReadFrame(r io.Reader, max int, v any) error {
	if max <= 0 {
		max = DefaultMaxFrameSize
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("read control frame: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return fmt.Errorf("read control frame: %w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n == 0 {
		return errors.New("read control frame: empty body")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read control frame: %w", err)
	}
	return decodeBody(body, v)
}

func decodeBody(body []byte, v any) error {
	// The first byte says whether the body is a map: fixmap, map16 or map32.
	if c := body[0]; !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		return fmt.Errorf("read control frame: body is not a msgpack map (first byte %#02x)", c)
	}
	if err := msgpackcheck.Check(body, MaxDepth); err != nil {
		return fmt.Errorf("read control frame: %w", err)
	}
	if err := unmarshal(bytes.NewReader(body), v); err != nil {
		return fmt.Errorf("read control frame: decode: %w", err)
	}
	return nil
}

// unmarshal decodes one msgpack value from rd into v. It turns a decoder
// panic into an error: msgpack v5.4.1 panics on a nil where a time.Time (any
// non-pointer type with a custom decoder) is expected, and a peer must not
// be able to crash us with one byte.
func unmarshal(rd *bytes.Reader, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed msgpack (decoder panic: %v)", p)
		}
	}()
	return msgpack.NewDecoder(rd).Decode(v)
}

// Unmarshal decodes a raw msgpack value, such as a Request's Args, an event
// or a result, into v. Unlike msgpack.Unmarshal it never panics or runs out
// of stack on hostile input: it refuses values nested deeper than MaxDepth,
// lengths beyond the data, and bytes after the value.
func Unmarshal(raw msgpack.RawMessage, v any) error {
	if err := msgpackcheck.Check(raw, MaxDepth); err != nil {
		return err
	}
	return unmarshal(bytes.NewReader(raw), v)
}

// readVersioned reads a frame, checks its "v" before decoding the rest
// into v (so a peer of another version gets a version-mismatch, not a
// decode error about a field that changed), and returns a
// version-mismatch *Error if it differs from ProtocolVersion. A frame
// without "v" is decoded normally: v's own V field tells.
func readVersioned(r io.Reader, max int, v any) error {
	var raw msgpack.RawMessage
	if err := ReadFrame(r, max, &raw); err != nil {
		return err
	}
	var hdr struct {
		V *int `msgpack:"v"`
	}
	if err := unmarshal(bytes.NewReader(raw), &hdr); err != nil {
		return fmt.Errorf("read control frame: decode: %w", err)
	}
	if hdr.V != nil && *hdr.V != ProtocolVersion {
		return versionMismatch(*hdr.V)
	}
	if err := unmarshal(bytes.NewReader(raw), v); err != nil {
		return fmt.Errorf("read control frame: decode: %w", err)
	}
	return nil
}
