package fdpass

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/zdtools/zd/pkg/msgpackcheck"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the protocol version of the header (and of every frame zd
// programs exchange around a handoff). A peer speaking another version is
// refused with an error wrapping ErrVersion.
const Version = 1

// MaxPerMsg is how many descriptors one sendmsg carries: the kernel's
// SCM_MAX_FD is 253.
const MaxPerMsg = 253

// maxNameLen bounds every string of the metadata in a header.
const maxStringLen = 255

// ErrVersion is wrapped by errors about a peer speaking another protocol
// version.
var ErrVersion = errors.New("protocol version mismatch")

// header precedes the descriptors of a handoff.
type header struct {
	Version int    `msgpack:"v"`
	Count   int    `msgpack:"n"`
	FDs     []meta `msgpack:"fds"`
}

// meta describes one descriptor; an array on the wire, since there can be
// thousands.
type meta struct {
	//lint:ignore U1000 the tag tells msgpack to encode the struct as an array
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Family   string
	Type     string
	Local    string
}

// maxHeaderLen bounds the encoded header for at most limit descriptors.
func maxHeaderLen(limit int) int {
	return 64 + limit*(8+4*(maxStringLen+5))
}

func encodeHeader(h *header) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(h); err != nil {
		return nil, fmt.Errorf("encode fd header: %w", err)
	}
	return buf.Bytes(), nil
}

// maxDepth bounds the nesting of a handoff message (a real one nests 3
// deep); deeper input is refused before the decoder sees it.
const maxDepth = 16

// decodeHeader decodes and validates a header announcing at most limit
// descriptors.
func decodeHeader(b []byte, limit int) (header, error) {
	var h header
	if err := msgpackcheck.Check(b, maxDepth); err != nil {
		return header{}, fmt.Errorf("decode fd header: %w", err)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&h); err != nil {
		return header{}, fmt.Errorf("decode fd header: %w", err)
	}
	switch {
	case h.Version != Version:
		return header{}, fmt.Errorf("fd header: peer speaks protocol version %d, this side %d: %w", h.Version, Version, ErrVersion)
	case h.Count < 0:
		return header{}, fmt.Errorf("fd header: negative count %d", h.Count)
	case h.Count > limit:
		return header{}, fmt.Errorf("fd header: peer offers %d fds, more than the limit of %d", h.Count, limit)
	case len(h.FDs) != h.Count:
		return header{}, fmt.Errorf("fd header: count %d but %d descriptions", h.Count, len(h.FDs))
	}
	for i, m := range h.FDs {
		if len(m.Name) > maxStringLen || len(m.Family) > maxStringLen || len(m.Type) > maxStringLen || len(m.Local) > maxStringLen {
			return header{}, fmt.Errorf("fd header: description %d has a string over %d bytes", i, maxStringLen)
		}
	}
	return h, nil
}
