package fdpass

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxDepth bounds the nesting of a message.
const maxDepth = 16

var errTruncated = errors.New("msgpack: truncated")

// checkMsgpack walks one msgpack value in b without decoding it and
// refuses what would make a decoder allocate or recurse out of proportion
// to the input: a container or string longer than the bytes left, nesting
// deeper than maxDepth, or the reserved byte 0xc1. The msgpack library
// sizes slices from the declared length, so a 10-byte frame could
// otherwise ask for gigabytes.
func checkMsgpack(b []byte) error {
	pending := []int{1} // items still due at each open level
	i := 0
	for len(pending) > 0 {
		if pending[len(pending)-1] == 0 {
			pending = pending[:len(pending)-1]
			continue
		}
		pending[len(pending)-1]--
		if i >= len(b) {
			return errTruncated
		}
		c := b[i]
		i++
		var skip, items int // bytes of payload, items of a container
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = int(c & 0x1f)
		default:
			var n uint64
			var err error
			switch c {
			case 0xc4, 0xd9: // bin8, str8
				n, i, err = readLen(b, i, 1)
				skip = int(n)
			case 0xc5, 0xda:
				n, i, err = readLen(b, i, 2)
				skip = int(n)
			case 0xc6, 0xdb:
				n, i, err = readLen(b, i, 4)
				skip = int(n)
			case 0xc7: // ext8: len, type
				n, i, err = readLen(b, i, 1)
				skip = int(n) + 1
			case 0xc8:
				n, i, err = readLen(b, i, 2)
				skip = int(n) + 1
			case 0xc9:
				n, i, err = readLen(b, i, 4)
				skip = int(n) + 1
			case 0xca, 0xce, 0xd2:
				skip = 4
			case 0xcb, 0xcf, 0xd3:
				skip = 8
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 plus type
				skip = 1 + 1<<(c-0xd4)
			case 0xdc:
				n, i, err = readLen(b, i, 2)
				items = int(n)
			case 0xdd:
				n, i, err = readLen(b, i, 4)
				items = int(n)
			case 0xde:
				n, i, err = readLen(b, i, 2)
				items = 2 * int(n)
			case 0xdf:
				n, i, err = readLen(b, i, 4)
				items = 2 * int(n)
			default:
				return fmt.Errorf("msgpack: reserved byte %#x", c)
			}
			if err != nil {
				return err
			}
		}
		if skip > len(b)-i {
			return errTruncated
		}
		i += skip
		if items > 0 {
			if items > len(b)-i {
				return fmt.Errorf("msgpack: container of %d items in %d bytes", items, len(b)-i)
			}
			if len(pending) >= maxDepth {
				return fmt.Errorf("msgpack: nested deeper than %d", maxDepth)
			}
			pending = append(pending, items)
		}
	}
	return nil
}

func readLen(b []byte, i, size int) (uint64, int, error) {
	if len(b)-i < size {
		return 0, i, errTruncated
	}
	switch size {
	case 1:
		return uint64(b[i]), i + 1, nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b[i:])), i + 2, nil
	}
	return uint64(binary.BigEndian.Uint32(b[i:])), i + 4, nil
}
