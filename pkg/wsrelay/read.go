package wsrelay

import (
	"encoding/binary"
	"errors"
	"io"
)

// frameReader reads frames from a byte stream. While little arrives it
// reads into a small buffer inside the struct; when a read fills that, it
// borrows a big buffer from a pool and gives it back once drained.
type frameReader struct {
	src   io.Reader
	small [512]byte
	buf   []byte // small[:] or *big
	big   *[]byte
	r, w  int
}

func (fr *frameReader) init(src io.Reader, carried []byte) {
	fr.src = src
	fr.buf = fr.small[:]
	fr.r, fr.w = 0, 0
	if len(carried) > len(fr.small) {
		fr.big = bigReadPool.Get().(*[]byte)
		if len(carried) > len(*fr.big) {
			b := make([]byte, len(carried))
			fr.big = &b
		}
		fr.buf = *fr.big
	}
	fr.w = copy(fr.buf, carried)
}

// release gives the big buffer back when nothing is left in it.
func (fr *frameReader) release() {
	if fr.big == nil || fr.r != fr.w {
		return
	}
	bigReadPool.Put(fr.big)
	fr.big = nil
	fr.buf = fr.small[:]
	fr.r, fr.w = 0, 0
}

// fill reads until at least need bytes are buffered (need at most the
// buffer's length less maxHeaderLen).
func (fr *frameReader) fill(need int) error {
	for fr.w-fr.r < need {
		if fr.r > 0 && fr.r == fr.w {
			fr.r, fr.w = 0, 0
		}
		if len(fr.buf)-fr.r < maxHeaderLen {
			n := copy(fr.buf, fr.buf[fr.r:fr.w])
			fr.r, fr.w = 0, n
		}
		n, err := fr.src.Read(fr.buf[fr.w:])
		fr.w += n
		if n > 0 && fr.big == nil && fr.w == len(fr.buf) {
			// The small buffer filled at once: more is coming, read big.
			fr.big = bigReadPool.Get().(*[]byte)
			n := copy(*fr.big, fr.buf[fr.r:fr.w])
			fr.buf = *fr.big
			fr.r, fr.w = 0, n
		}
		if err != nil {
			if fr.w-fr.r >= need {
				return nil
			}
			if errors.Is(err, io.EOF) && fr.w-fr.r > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readFull reads len(p) payload bytes: buffered ones first; a rest that
// fits the buffer is read through it, with whatever follows (the next
// frames of a batch: one read instead of two), a bigger rest straight
// from the stream.
func (fr *frameReader) readFull(p []byte) error {
	n := copy(p, fr.buf[fr.r:fr.w])
	fr.r += n
	p = p[n:]
	if len(p) == 0 {
		return nil
	}
	if len(p) <= len(fr.buf)-maxHeaderLen {
		if err := fr.fill(len(p)); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		fr.r += copy(p, fr.buf[fr.r:fr.w])
		return nil
	}
	_, err := io.ReadFull(fr.src, p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readHeader reads and decodes one frame header. It checks only what the
// encoding itself forbids; the rules that depend on role and state are in
// msgReader.
func (fr *frameReader) readHeader() (header, error) {
	var h header
	if err := fr.fill(2); err != nil {
		return h, err
	}
	b0, b1 := fr.buf[fr.r], fr.buf[fr.r+1]
	h.fin = b0&0x80 != 0
	h.rsv = b0 & 0x70
	h.op = b0 & 0x0F
	h.masked = b1&0x80 != 0
	need := 2
	l := int64(b1 & 0x7F)
	switch l {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	if h.masked {
		need += 4
	}
	if err := fr.fill(need); err != nil {
		return h, err
	}
	p := fr.buf[fr.r+2 : fr.r+need]
	switch l {
	case 126:
		l = int64(binary.BigEndian.Uint16(p))
		p = p[2:]
		if l < 126 {
			return h, protocolError("frame length not in its shortest form")
		}
	case 127:
		u := binary.BigEndian.Uint64(p)
		p = p[8:]
		if u>>63 != 0 {
			return h, protocolError("frame length has its most significant bit set")
		}
		if u <= 0xFFFF {
			return h, protocolError("frame length not in its shortest form")
		}
		l = int64(u)
	}
	h.length = l
	if h.masked {
		h.key = binary.LittleEndian.Uint32(p)
	}
	fr.r += need
	return h, nil
}

// hasFrame reports whether a whole frame is buffered, so reading it will
// not block. Loops flush what they batched before any read that may block.
func (fr *frameReader) hasFrame() bool {
	n, ok := frameLen(fr.buf[fr.r:fr.w])
	return ok && fr.w-fr.r >= n
}

// frameLen returns the length of the frame at the start of b, header
// included; ok is false when b does not hold the whole header.
func frameLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	n := 2
	if b[1]&0x80 != 0 {
		n += 4
	}
	l := uint64(b[1] & 0x7F)
	switch l {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		l = uint64(binary.BigEndian.Uint16(b[2:]))
		n += 2
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		l = binary.BigEndian.Uint64(b[2:])
		n += 8
		if l > 1<<40 {
			return 0, false
		}
	}
	return n + int(l), true
}

// unwritten returns the frames of buf that did not reach the stream whole
// when a write of buf stopped after n bytes: the frame cut by n and those
// after it. Frames wholly written before n are the kernel's now.
func unwritten(buf []byte, n int) []byte {
	pos := 0
	for pos < len(buf) {
		l, ok := frameLen(buf[pos:])
		if !ok || pos+l > n {
			break
		}
		pos += l
	}
	return buf[pos:]
}
