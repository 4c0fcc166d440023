package wsrelay

import "strconv"

// msgReader turns frames into messages and enforces the rules of RFC 6455
// section 5 for one role: masking, reserved bits, opcodes, control frames,
// fragmentation, UTF-8 of text (fail-fast, across fragments) and the
// message size limit. Control frames come back as they arrive, also between
// the fragments of a message.
type msgReader struct {
	fr           frameReader
	expectMasked bool  // true when reading a client's frames (we are the server)
	deflate      bool  // permessage-deflate was negotiated for this direction
	maxMessage   int64 // bytes, after decompression

	inMsg      bool // a fragmented message is in progress
	op         byte
	compressed bool
	data       *[]byte // borrowed from msgPool while a message is read
	checked    int     // bytes of data already checked as UTF-8

	ctrl [maxControlPayload]byte
}

// message is what next returns. For data, payload is borrowed: it is valid
// until the next call to next or release.
type message struct {
	op      byte
	payload []byte
}

// next reads until a whole data message or a control frame is in. Errors:
// *CloseError for a peer that broke the protocol (send its Code), io.EOF
// for a clean end of the stream between frames, anything else from the
// stream (a drop, mid-frame io.ErrUnexpectedEOF).
func (m *msgReader) next() (message, error) {
	m.releaseData()
	for {
		h, err := m.fr.readHeader()
		if err != nil {
			return message{}, err
		}
		if h.masked != m.expectMasked {
			if m.expectMasked {
				return message{}, protocolError("client frame not masked")
			}
			return message{}, protocolError("server frame masked")
		}
		if h.rsv&(rsv2|rsv3) != 0 {
			return message{}, protocolError("reserved bits RSV2/RSV3 set")
		}
		if isControl(h.op) {
			msg, err := m.control(h)
			if err != nil {
				return message{}, err
			}
			return msg, nil
		}
		switch h.op {
		case opText, opBinary:
			if m.inMsg {
				return message{}, protocolError("new data frame before the fragmented message ended")
			}
			if h.rsv&rsv1 != 0 && !m.deflate {
				return message{}, protocolError("RSV1 set without permessage-deflate")
			}
			m.inMsg, m.op, m.compressed, m.checked = true, h.op, h.rsv&rsv1 != 0, 0
			m.data = getBuf()
		case opContinuation:
			if !m.inMsg {
				return message{}, protocolError("continuation frame with no message to continue")
			}
			if h.rsv&rsv1 != 0 {
				return message{}, protocolError("RSV1 set on a continuation frame")
			}
		default:
			return message{}, protocolError("reserved opcode " + strconv.Itoa(int(h.op)))
		}
		if int64(len(*m.data))+h.length > m.maxMessage {
			return message{}, &CloseError{CloseTooBig, "message over " + strconv.FormatInt(m.maxMessage, 10) + " bytes"}
		}
		if err := m.readPayload(h); err != nil {
			return message{}, err
		}
		if m.op == opText && !m.compressed {
			n, ok := validUTF8Prefix((*m.data)[m.checked:])
			m.checked += n
			if !ok || (h.fin && m.checked != len(*m.data)) {
				return message{}, &CloseError{CloseInvalidPayload, "text message is not valid UTF-8"}
			}
		}
		if !h.fin {
			continue
		}
		m.inMsg = false
		if m.compressed {
			out := getBuf()
			if err := inflate(out, *m.data, m.maxMessage); err != nil {
				putBuf(out)
				return message{}, err
			}
			putBuf(m.data)
			m.data = out
			if m.op == opText {
				if n, ok := validUTF8Prefix(*out); !ok || n != len(*out) {
					return message{}, &CloseError{CloseInvalidPayload, "text message is not valid UTF-8"}
				}
			}
		}
		return message{op: m.op, payload: *m.data}, nil
	}
}

// readPayload appends h's payload to the message, unmasked.
func (m *msgReader) readPayload(h header) error {
	b := *m.data
	start := len(b)
	need := start + int(h.length)
	if cap(b) < need {
		nb := make([]byte, start, need+need/4)
		copy(nb, b)
		b = nb
	}
	b = b[:need]
	*m.data = b
	if err := m.fr.readFull(b[start:]); err != nil {
		return err
	}
	if h.masked {
		mask(h.key, b[start:])
	}
	return nil
}

func (m *msgReader) control(h header) (message, error) {
	if h.length > maxControlPayload {
		return message{}, protocolError("control frame payload over 125 bytes")
	}
	if !h.fin {
		return message{}, protocolError("fragmented control frame")
	}
	if h.rsv != 0 {
		return message{}, protocolError("reserved bit set on a control frame")
	}
	if h.op != opClose && h.op != opPing && h.op != opPong {
		return message{}, protocolError("reserved control opcode " + strconv.Itoa(int(h.op)))
	}
	p := m.ctrl[:h.length]
	if err := m.fr.readFull(p); err != nil {
		return message{}, err
	}
	if h.masked {
		mask(h.key, p)
	}
	return message{op: h.op, payload: p}, nil
}

// releaseData returns the buffer of the last data message, unless a
// fragmented message is still being assembled in it.
func (m *msgReader) releaseData() {
	if m.data != nil && !m.inMsg {
		putBuf(m.data)
		m.data = nil
	}
	if !m.inMsg {
		m.fr.release()
	}
}

// release gives back every borrowed buffer; the reader is done.
func (m *msgReader) release() {
	if m.data != nil {
		putBuf(m.data)
		m.data = nil
	}
	m.inMsg = false
	m.fr.r, m.fr.w = 0, 0
	m.fr.release()
}

// midMessage reports whether the reader stopped inside a message (part of
// it was read and would be lost if the stream ended now).
func (m *msgReader) midMessage() bool { return m.inMsg }
