package proxy

import (
	"strings"

	"golang.org/x/net/http2/hpack"
)

// hpackEncoder writes the header blocks of one HTTP/2 connection's
// responses (RFC 7541). It replaces x/net's hpack.Encoder on the hot path,
// which hashes every field into maps of its dynamic table and adds every
// new field to it: a response's Date, Content-Length and ETag change with
// each response, so each one cost an insertion, an eviction and their map
// updates, to no use.
//
// Here a field's name comes from the static table when it is there; fields
// whose value changes from response to response (hpackVarying) are sent as
// literals without indexing; the others (Content-Type, Server,
// Cache-Control, ...) go into a small dynamic table, searched linearly, so
// the next response that carries them sends an index. Values are Huffman
// coded when that makes them shorter and they are being indexed (paid once);
// literals that are not indexed go as they are, which costs no CPU.
//
// Used under the connection's write lock only.
type hpackEncoder struct {
	dyn        []hpackEntry // the dynamic table, oldest first
	size       uint32       // sum of the entries' sizes (RFC 7541 section 4.1)
	maxSize    uint32       // the table size in use
	sizeUpdate bool         // maxSize went down: say so at the next block's start
}

type hpackEntry struct{ name, value string }

// hpackDefaultTableSize is SETTINGS_HEADER_TABLE_SIZE's initial value, and
// the most this encoder uses whatever the peer allows.
const hpackDefaultTableSize = 4096

func newHpackEncoder() *hpackEncoder {
	return &hpackEncoder{maxSize: hpackDefaultTableSize}
}

// setMaxSize applies the peer's SETTINGS_HEADER_TABLE_SIZE. The encoder
// only ever shrinks its table (a larger one is allowed, not required), so
// the one size update it sends is also the smallest (section 4.2).
func (e *hpackEncoder) setMaxSize(n uint32) {
	if n >= e.maxSize {
		return
	}
	e.maxSize = n
	e.sizeUpdate = true
	e.evict(0)
}

// begin starts a header block in dst.
func (e *hpackEncoder) begin(dst []byte) []byte {
	if e.sizeUpdate {
		e.sizeUpdate = false
		dst = appendHpackInt(dst, 0x20, 5, uint64(e.maxSize))
	}
	return dst
}

// status appends the :status pseudo-header.
func (e *hpackEncoder) status(dst []byte, code int) []byte {
	for i, c := range hpackStaticStatus {
		if c == code {
			return append(dst, 0x80|byte(8+i)) // indexed: static entries 8-14
		}
	}
	var b [3]byte
	if code < 100 || code > 999 {
		code = 500 // checkWriteHeaderCode keeps codes in range; belt and braces
	}
	b[0], b[1], b[2] = byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10)
	dst = appendHpackInt(dst, 0x00, 4, 8) // literal without indexing, name :status
	return appendHpackString(dst, string(b[:]), false)
}

// field appends one field. name is the lowercase wire name; static is its
// index in the static table, 0 when it has none.
func (e *hpackEncoder) field(dst []byte, name string, static uint8, value string) []byte {
	nameIdx := uint64(static)
	for i := len(e.dyn) - 1; i >= 0; i-- {
		ent := &e.dyn[i]
		if ent.name != name {
			continue
		}
		idx := uint64(hpackStaticLen + len(e.dyn) - i)
		if ent.value == value {
			return appendHpackInt(dst, 0x80, 7, idx)
		}
		if nameIdx == 0 {
			nameIdx = idx
		}
	}
	size := uint32(len(name) + len(value) + 32)
	if hpackVarying(name) || size > e.maxSize/2 {
		if nameIdx != 0 {
			dst = appendHpackInt(dst, 0x00, 4, nameIdx)
		} else {
			dst = append(dst, 0x00)
			dst = appendHpackString(dst, name, false)
		}
		return appendHpackString(dst, value, false)
	}
	if nameIdx != 0 {
		dst = appendHpackInt(dst, 0x40, 6, nameIdx)
	} else {
		dst = append(dst, 0x40)
		dst = appendHpackString(dst, name, true)
	}
	dst = appendHpackString(dst, value, true)
	e.evict(size)
	// Copies: name and value may be substrings of a whole response head,
	// which an entry would otherwise keep in memory for as long as it lives.
	e.dyn = append(e.dyn, hpackEntry{strings.Clone(name), strings.Clone(value)})
	e.size += size
	return dst
}

// evict drops the oldest entries until room more bytes fit.
func (e *hpackEncoder) evict(room uint32) {
	n := 0
	for n < len(e.dyn) && e.size+room > e.maxSize {
		ent := e.dyn[n]
		e.size -= uint32(len(ent.name) + len(ent.value) + 32)
		n++
	}
	if n > 0 {
		k := copy(e.dyn, e.dyn[n:])
		clear(e.dyn[k:])
		e.dyn = e.dyn[:k]
	}
}

// hpackVarying reports whether a response field's value usually differs
// from one response to the next, or must not sit in a table (cookies,
// credentials): such fields are never indexed.
func hpackVarying(name string) bool {
	switch name {
	case "date", "content-length", "etag", "last-modified", "expires", "age",
		"content-range", "location", "set-cookie", "authorization",
		"proxy-authorization", "www-authenticate", "x-request-id", "traceparent":
		return true
	}
	return false
}

// appendHpackInt appends v with an n-bit prefix, first holding the bits
// above the prefix (RFC 7541 section 5.1).
func appendHpackInt(dst []byte, first byte, n uint8, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(dst, first|byte(v))
	}
	dst = append(dst, first|byte(limit))
	v -= limit
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// appendHpackString appends s as a string literal (section 5.2), Huffman
// coded when huffman is set and that is shorter.
func appendHpackString(dst []byte, s string, huffman bool) []byte {
	if huffman {
		if n := hpack.HuffmanEncodeLength(s); n < uint64(len(s)) {
			dst = appendHpackInt(dst, 0x80, 7, n)
			return hpack.AppendHuffmanString(dst, s)
		}
	}
	dst = appendHpackInt(dst, 0, 7, uint64(len(s)))
	return append(dst, s...)
}

// hpackStatic is the static table's names (RFC 7541 Appendix A): entry i
// is index i+1. Only names are looked up here; the name-value pairs that
// matter to responses are :status's, which status encodes directly.
var hpackStatic = [...]string{
	":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
	":status", ":status", ":status", ":status", ":status", ":status", ":status",
	"accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
	"access-control-allow-origin", "age", "allow", "authorization", "cache-control",
	"content-disposition", "content-encoding", "content-language", "content-length",
	"content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
	"expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
	"if-unmodified-since", "last-modified", "link", "location", "max-forwards",
	"proxy-authenticate", "proxy-authorization", "range", "referer", "refresh", "retry-after",
	"server", "set-cookie", "strict-transport-security", "transfer-encoding", "user-agent",
	"vary", "via", "www-authenticate",
}

const hpackStaticLen = len(hpackStatic)

// hpackStaticStatus is the :status values of static entries 8 to 14.
var hpackStaticStatus = [...]int{200, 204, 206, 304, 400, 404, 500}

// hpackStaticName maps a name to its first index in the static table.
var hpackStaticName = func() map[string]uint8 {
	m := make(map[string]uint8, hpackStaticLen)
	for i, n := range hpackStatic {
		if _, ok := m[n]; !ok {
			m[n] = uint8(i + 1)
		}
	}
	return m
}()
