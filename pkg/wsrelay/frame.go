package wsrelay

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// Opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

const (
	rsv1 = 0x40 // permessage-deflate's "compressed" bit (RFC 7692 section 6)
	rsv2 = 0x20
	rsv3 = 0x10

	maxControlPayload = 125
	maxHeaderLen      = 14
)

// header is one frame header as read off the wire.
type header struct {
	fin    bool
	rsv    byte // the three reserved bits, in place (0x70 mask)
	op     byte
	masked bool
	key    uint32 // little-endian view of the 4 masking key bytes
	length int64
}

func isControl(op byte) bool { return op&0x8 != 0 }

// appendHeader appends a frame header. key is only written when masked.
func appendHeader(dst []byte, fin bool, rsv, op byte, length int, masked bool, key uint32) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	var b1 byte
	if masked {
		b1 = 0x80
	}
	switch {
	case length <= 125:
		dst = append(dst, b0, b1|byte(length))
	case length <= 0xFFFF:
		dst = append(dst, b0, b1|126, byte(length>>8), byte(length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(length))
	}
	if masked {
		dst = binary.LittleEndian.AppendUint32(dst, key)
	}
	return dst
}

// appendFrame appends a whole frame; when masked the payload is masked with
// a fresh key as RFC 6455 section 5.3 requires of a client.
func appendFrame(dst []byte, fin bool, rsv, op byte, payload []byte, masked bool) []byte {
	var key uint32
	if masked {
		// math/rand/v2's global source is the runtime's per-thread ChaCha8,
		// seeded from the OS: unpredictable to the peer, which is all that
		// masking asks for (section 10.3), and no syscall per frame.
		key = rand.Uint32()
		if key == 0 {
			key = 1
		}
	}
	dst = appendHeader(dst, fin, rsv, op, len(payload), masked, key)
	start := len(dst)
	dst = append(dst, payload...)
	if masked {
		mask(key, dst[start:])
	}
	return dst
}

// mask XORs b in place with key (little-endian view of the key bytes),
// starting at key byte 0, and returns the key rotated for the next byte so
// a payload can be unmasked in pieces.
func mask(key uint32, b []byte) uint32 {
	if len(b) >= 8 {
		k64 := uint64(key)<<32 | uint64(key)
		for len(b) >= 64 {
			for i := 0; i < 64; i += 8 {
				v := binary.LittleEndian.Uint64(b[i:])
				binary.LittleEndian.PutUint64(b[i:], v^k64)
			}
			b = b[64:]
		}
		for len(b) >= 8 {
			v := binary.LittleEndian.Uint64(b)
			binary.LittleEndian.PutUint64(b, v^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}
