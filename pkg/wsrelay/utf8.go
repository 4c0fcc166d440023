package wsrelay

import "unicode/utf8"

// validUTF8Prefix checks b incrementally, for fail-fast validation of a
// text message that arrives in fragments. It returns how many leading bytes
// are complete valid UTF-8 and false when b holds a sequence that no more
// bytes can make valid. A trailing incomplete sequence that could still
// become valid is left unconsumed.
func validUTF8Prefix(b []byte) (int, bool) {
	n := 0
	for n < len(b) {
		if b[n] < utf8.RuneSelf {
			n++
			continue
		}
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size == 1 {
			if !utf8.FullRune(b[n:]) && canStartRune(b[n:]) {
				return n, true
			}
			return n, false
		}
		n += size
	}
	return n, true
}

// canStartRune reports whether the incomplete sequence b is the start of a
// valid encoding (RFC 3629's table: the second byte's range depends on the
// first).
func canStartRune(b []byte) bool {
	c := b[0]
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
	case c == 0xE0:
		lo = 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
	case c == 0xED:
		hi = 0x9F
	case c == 0xF0:
		lo = 0x90
	case c >= 0xF1 && c <= 0xF3:
	case c == 0xF4:
		hi = 0x8F
	default:
		return false
	}
	if len(b) > 1 && (b[1] < lo || b[1] > hi) {
		return false
	}
	if len(b) > 2 {
		for _, x := range b[2:] {
			if x < 0x80 || x > 0xBF {
				return false
			}
		}
	}
	return true
}
