// Package msgpackcheck vets untrusted msgpack before it reaches a decoder.
//
// github.com/vmihailenco/msgpack/v5 sizes slices and maps from the lengths
// declared in its input and recurses once per nesting level, so a 10-byte
// message can make it allocate gigabytes and a few MiB of nested arrays
// overflow the goroutine stack (a fatal error no recover catches). Every zd
// decoder of bytes from outside the process (control frames, fd-passing
// headers, the worker table, snapshots) calls Check first.
package msgpackcheck

import (
	"encoding/binary"
	"fmt"
)

// Check reports, without recursion and without decoding, whether b holds
// exactly one msgpack value that nests at most maxDepth deep and whose
// declared lengths fit in b. It returns nil for such input, and otherwise an
// error naming the first problem: truncation, an invalid byte, nesting too
// deep, or bytes after the value. Input that passes can be decoded without
// running out of stack or allocating beyond b's size.
func Check(b []byte, maxDepth int) error {
	pos := 0
	need := func(n uint64) error {
		if n > uint64(len(b)-pos) {
			return fmt.Errorf("msgpack: truncated at byte %d (%d more bytes declared, %d left)", pos, n, len(b)-pos)
		}
		return nil
	}
	uint := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var v uint64
		switch size {
		case 1:
			v = uint64(b[pos])
		case 2:
			v = uint64(binary.BigEndian.Uint16(b[pos:]))
		case 4:
			v = uint64(binary.BigEndian.Uint32(b[pos:]))
		}
		pos += size
		return v, nil
	}
	// pending[i] counts the values still expected in the i-th open
	// container; the bottom entry is the single top-level value.
	pending := []uint64{1}
	for len(pending) > 0 {
		if pending[len(pending)-1] == 0 {
			pending = pending[:len(pending)-1]
			continue
		}
		pending[len(pending)-1]--
		if err := need(1); err != nil {
			return err
		}
		c := b[pos]
		pos++
		var skip, items uint64
		var err error
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			skip, err = uint(1)
		case c == 0xc5 || c == 0xda:
			skip, err = uint(2)
		case c == 0xc6 || c == 0xdb:
			skip, err = uint(4)
		case c == 0xc7:
			skip, err = uint(1)
			skip++ // the type byte
		case c == 0xc8:
			skip, err = uint(2)
			skip++
		case c == 0xc9:
			skip, err = uint(4)
			skip++
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xca || c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcb || c == 0xcf || c == 0xd3:
			skip = 8
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc:
			items, err = uint(2)
		case c == 0xdd:
			items, err = uint(4)
		case c == 0xde:
			items, err = uint(2)
			items *= 2
		case c == 0xdf:
			items, err = uint(4)
			items *= 2
		default:
			return fmt.Errorf("msgpack: invalid byte %#02x at %d", c, pos-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		pos += int(skip)
		if items > 0 {
			// Every value takes at least one byte.
			if err := need(items); err != nil {
				return err
			}
			if len(pending) > maxDepth {
				return fmt.Errorf("msgpack: nested more than %d deep", maxDepth)
			}
			pending = append(pending, items)
		}
	}
	if pos != len(b) {
		return fmt.Errorf("msgpack: %d bytes after the value", len(b)-pos)
	}
	return nil
}
