package wsrelay

import (
	"errors"
	"time"
)

// backendLoop reads backend b's messages and sends them to the client,
// compressed when permessage-deflate was negotiated, in batches like
// clientLoop. It ends when b closes or drops; what follows depends on the
// session's state (see backendClosed and backendDropped).
func (s *Session) backendLoop(b *backendConn) {
	defer close(b.done)
	defer s.sendCloseReply(b)
	r := s.r
	// The output buffer is borrowed for a batch and given back at each
	// flush, so an idle session holds none.
	var out *[]byte
	var outGen uint64 // resumable: the client stream out was encoded for
	flush := func() {
		if out == nil {
			return
		}
		if s.rs != nil {
			s.flushResumable(*out, outGen)
		} else if s.state.Load() != stClosing || s.replyPending.Load() {
			s.writeClient(*out)
		}
		putBuf(out)
		out = nil
	}
	defer b.rd.release()
	for {
		if !b.rd.fr.hasFrame() {
			flush()
		}
		msg, err := b.rd.next()
		if err != nil {
			flush()
			if b.rd.midMessage() {
				r.st.lostMid.Add(1)
			}
			s.backendDropped(b, err)
			return
		}
		switch msg.op {
		case opPing:
			var buf [maxHeaderLen + maxControlPayload]byte
			b.wmu.Lock()
			b.conn.Write(appendFrame(buf[:0], true, 0, opPong, msg.payload, true))
			b.wmu.Unlock()
			continue
		case opPong:
			continue
		case opClose:
			flush()
			s.backendClosed(b, msg.payload)
			return
		}
		r.st.msgsToClient.Add(1)
		r.st.bytesToClient.Add(uint64(len(msg.payload)))
		s.snap.toClient(len(msg.payload))
		if s.rs != nil && s.state.Load() == stClosing && !s.replyPending.Load() {
			continue
		}
		if s.rs != nil {
			// Every message is kept for a replay; it is encoded now only
			// for a stream that is attached, and a batch for a stream
			// that went is dropped (the replay sends it again).
			s.cw.Lock()
			over := s.recordLocked(msg.op, msg.payload)
			if s.rs.live {
				if out != nil && outGen != s.rs.gen {
					putBuf(out)
					out = nil
				}
				if out == nil {
					out, outGen = getBuf(), s.rs.gen
				}
				*out = s.appendClientFrame(*out, msg.op, msg.payload)
			}
			s.cw.Unlock()
			if over {
				s.endDetached(ReasonResumeGap, ResumeGap)
			}
			if out != nil && len(*out) >= bigReadSize {
				flush()
			}
			continue
		}
		if out == nil {
			out = getBuf()
		}
		if s.deflate && len(msg.payload) >= r.cfg.CompressMin {
			z := getBuf()
			*z = deflateAppend((*z)[:0], msg.payload, s.dp.serverWindowBits)
			*out = appendFrame(*out, true, rsv1, msg.op, *z, false)
			putBuf(z)
		} else {
			*out = appendFrame(*out, true, 0, msg.op, msg.payload, false)
		}
		if len(*out) >= bigReadSize {
			flush()
		}
	}
}

// backendClosed handles b's Close frame. During a move or the session's
// end it is the reply to ours. Otherwise 1001 and 1012 re-attach the
// session; any other code goes to the client as it is.
func (s *Session) backendClosed(b *backendConn, payload []byte) {
	code, reason, perr := parseClose(payload)
	s.mu.Lock()
	if s.b != b || s.state.Load() != stAttached {
		s.mu.Unlock()
		b.conn.Close()
		return
	}
	if perr != nil {
		s.mu.Unlock()
		s.backendBroke(b, perr)
		return
	}
	if code == CloseGoingAway || code == CloseServiceRestart {
		s.startMoveLocked(true)
		s.mu.Unlock()
		s.replyClose(b, code)
		return
	}
	s.toClosing()
	s.mu.Unlock()
	s.replyClose(b, code)
	s.countEnd(code, ReasonBackend)
	s.closeClient(code, reason)
}

// replyClose sends b a Close with code (an answer to its own Close, or the
// reason zd-queue ends it), bounded by CloseTimeout, and closes b.
func (s *Session) replyClose(b *backendConn, code uint16) {
	var buf [maxHeaderLen + maxControlPayload]byte
	b.wmu.Lock()
	b.conn.SetWriteDeadline(time.Now().Add(s.r.cfg.CloseTimeout))
	b.conn.Write(appendFrame(buf[:0], true, 0, opClose, closePayload(code, ""), true))
	b.wmu.Unlock()
	b.conn.Close()
}

// backendDropped handles the end of b's stream without a Close: a drop
// re-attaches the session; a protocol error of the backend ends it with
// 1014 (Bad Gateway) to the client.
func (s *Session) backendDropped(b *backendConn, err error) {
	var ce *CloseError
	if errors.As(err, &ce) {
		s.mu.Lock()
		mine := s.b == b && s.state.Load() == stAttached
		s.mu.Unlock()
		if mine {
			s.backendBroke(b, ce)
			return
		}
	}
	s.mu.Lock()
	if s.b == b && s.state.Load() == stAttached {
		s.startMoveLocked(true)
	}
	s.mu.Unlock()
	b.conn.Close()
}

// backendBroke ends the session after the backend broke RFC 6455 (or its
// message was over the size limit: 1009 to the client then).
func (s *Session) backendBroke(b *backendConn, err error) {
	var ce *CloseError
	code := uint16(CloseProtocolError)
	if errors.As(err, &ce) {
		code = ce.Code
	}
	s.replyClose(b, code)
	if code == CloseTooBig {
		s.failClient(CloseTooBig, "zd-queue: message from the backend over the size limit", ReasonTooBig)
		return
	}
	s.failClient(CloseBadGateway, "zd-queue: the backend broke the WebSocket protocol", ReasonBackendProtocol)
}

// sendCloseReply sends the client's pending Close reply when backend b's
// loop ends (it got the backend's Close reply, or dropped, or timed out).
func (s *Session) sendCloseReply(b *backendConn) {
	s.mu.Lock()
	pending := s.replyPending.Load() && s.b == b
	code := s.replyCode
	s.replyPending.Store(false)
	s.mu.Unlock()
	if pending {
		s.writeClientControl(opClose, closePayload(code, ""))
	}
}

// flushResumable writes a batch encoded for client stream gen, unless
// that stream went meanwhile.
func (s *Session) flushResumable(b []byte, gen uint64) {
	if s.state.Load() == stClosing && !s.replyPending.Load() {
		return
	}
	s.cw.Lock()
	if !s.rs.live || s.rs.gen != gen {
		s.cw.Unlock()
		return
	}
	c := s.client
	_, err := c.Write(b)
	s.cw.Unlock()
	if err != nil {
		c.Close()
	}
}
