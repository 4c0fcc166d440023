package snapshot

import (
	"encoding/binary"
	"fmt"
)

// Region is a span of a snapshot file's bytes, for tools and tests that
// show or damage a file on purpose.
type Region struct {
	Name   string // magic, version, flags, header-length, prefix-crc, header, header-check, frame, nonce, body, tag
	Chunk  int    // chunk index, -1 outside chunks
	End    bool   // in the end marker
	Offset int
	Size   int
}

func (g Region) String() string {
	where := ""
	switch {
	case g.End:
		where = " (end marker)"
	case g.Chunk >= 0:
		where = fmt.Sprintf(" (chunk %d)", g.Chunk)
	}
	return fmt.Sprintf("%-13s%-16s offset %d size %d", g.Name, where, g.Offset, g.Size)
}

// Layout lists the regions of a whole snapshot file b, in order, without
// opening a chunk: it needs no key and checks nothing but the framing.
func Layout(b []byte) ([]Region, error) {
	if len(b) < prefixSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the prefix", ErrTruncated, len(b))
	}
	hlen := int(binary.BigEndian.Uint32(b[12:]))
	out := []Region{{"magic", -1, false, 0, 8}, {"version", -1, false, 8, 2}, {"flags", -1, false, 10, 2},
		{"header-length", -1, false, 12, 4}, {"prefix-crc", -1, false, 16, 4}, {"header", -1, false, prefixSize, hlen},
		{"header-check", -1, false, prefixSize + hlen, checkSize}}
	pos := prefixSize + hlen + checkSize
	if pos > len(b) {
		return out, fmt.Errorf("%w: the header runs past the end", ErrTruncated)
	}
	h, err := decodeHeaderBody(Version, b[prefixSize:prefixSize+hlen])
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	nonce := 0
	if h.Cipher == CipherAESGCM {
		nonce = nonceSize
	}
	for i := 0; pos < len(b); i++ {
		if pos+frameSize > len(b) {
			return out, fmt.Errorf("%w: chunk %d's frame runs past the end", ErrTruncated, i)
		}
		f, ok := parseFrame(b[pos:])
		if !ok {
			return out, fmt.Errorf("%w: chunk %d's frame fails its CRC", ErrCorrupt, i)
		}
		end := f.typ == typeEnd
		n := int(f.length)
		if pos+frameSize+n > len(b) || n < nonce+tagSize {
			return out, fmt.Errorf("%w: chunk %d runs past the end", ErrTruncated, i)
		}
		out = append(out, Region{"frame", i, end, pos, frameSize})
		pos += frameSize
		if nonce > 0 {
			out = append(out, Region{"nonce", i, end, pos, nonce})
		}
		body := n - nonce - tagSize
		out = append(out, Region{"body", i, end, pos + nonce, body}, Region{"tag", i, end, pos + nonce + body, tagSize})
		pos += n
	}
	return out, nil
}
