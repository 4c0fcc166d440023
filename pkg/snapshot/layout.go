package snapshot

import (
	"encoding/binary"
	"fmt"
	"io"
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

// Layout lists the regions of the snapshot r, in order, without opening a
// chunk: it needs no key, checks nothing but the framing, and skips over
// payloads, so a file of any size costs no memory.
func Layout(r io.Reader) ([]Region, error) {
	var prefix [prefixSize]byte
	if n, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the prefix", ErrTruncated, n)
	}
	hlen := int(binary.BigEndian.Uint32(prefix[12:]))
	out := []Region{{"magic", -1, false, 0, 8}, {"version", -1, false, 8, 2}, {"flags", -1, false, 10, 2},
		{"header-length", -1, false, 12, 4}, {"prefix-crc", -1, false, 16, 4}, {"header", -1, false, prefixSize, hlen},
		{"header-check", -1, false, prefixSize + hlen, checkSize}}
	if hlen > maxHeader {
		return out, fmt.Errorf("%w: header length %d", ErrHeader, hlen)
	}
	head := make([]byte, hlen+checkSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return out, fmt.Errorf("%w: the header runs past the end", ErrTruncated)
	}
	h, err := decodeHeaderBody(Version, head[:hlen])
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	nonce := 0
	if h.Cipher == CipherAESGCM {
		nonce = nonceSize
	}
	pos := prefixSize + hlen + checkSize
	var fb [frameSize]byte
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, fb[:])
		if n == 0 && err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%w: chunk %d's frame runs past the end", ErrTruncated, i)
		}
		f, ok := parseFrame(fb[:])
		if !ok {
			return out, fmt.Errorf("%w: chunk %d's frame fails its CRC", ErrCorrupt, i)
		}
		end, size := f.typ == typeEnd, int(f.length)
		if size < nonce+tagSize {
			return out, fmt.Errorf("%w: chunk %d's payload length %d", ErrCorrupt, i, size)
		}
		if k, _ := io.CopyN(io.Discard, r, int64(size)); k != int64(size) {
			return out, fmt.Errorf("%w: chunk %d runs past the end", ErrTruncated, i)
		}
		out = append(out, Region{"frame", i, end, pos, frameSize})
		pos += frameSize
		if nonce > 0 {
			out = append(out, Region{"nonce", i, end, pos, nonce})
		}
		body := size - nonce - tagSize
		out = append(out, Region{"body", i, end, pos + nonce, body}, Region{"tag", i, end, pos + nonce + body, tagSize})
		pos += size
	}
}
