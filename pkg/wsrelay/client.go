package wsrelay

import (
	"errors"
	"time"
)

// clientLoop reads the client's messages and sends them to the backend,
// or holds them while the session moves. It batches the frames of what
// the client sent in one read and writes them at once; it writes before
// any read that may block, so nothing waits in the batch.
func (s *Session) clientLoop() {
	r := s.r
	var out *[]byte     // borrowed per batch, so an idle session holds none
	var ob *backendConn // the backend whose wmu this loop holds for the batch
	flush := func() {
		if ob == nil {
			return
		}
		b := ob
		ob = nil
		buf := *out
		n, err := b.conn.Write(buf)
		b.wmu.Unlock()
		if err != nil {
			s.backendWriteFailed(b, unwritten(buf, n))
		}
		putBuf(out)
		out = nil
	}
	defer flush()
	for {
		if !s.cr.fr.hasFrame() {
			flush()
		}
		msg, err := s.cr.next()
		if err != nil {
			flush()
			s.clientFailed(err)
			return
		}
		s.heard()
		switch msg.op {
		case opPing:
			s.writeClientControl(opPong, msg.payload)
			continue
		case opPong:
			s.ponged()
			continue
		case opClose:
			flush()
			s.clientClosed(msg.payload)
			return
		}
		r.st.msgsToBackend.Add(1)
		r.st.bytesToBackend.Add(uint64(len(msg.payload)))
		s.snap.fromClient(len(msg.payload))
		if s.rs != nil {
			s.rs.fromClient.Add(1)
		}
		switch s.state.Load() {
		case stAttached:
			if ob == nil {
				s.mu.Lock()
				if s.state.Load() == stAttached {
					ob = s.b
					ob.wmu.Lock()
				}
				s.mu.Unlock()
			}
			if ob != nil {
				if out == nil {
					out = getBuf()
				}
				*out = appendFrame(*out, true, 0, msg.op, msg.payload, true)
				if len(*out) >= bigReadSize {
					flush()
				}
				continue
			}
		case stClosing:
			continue
		}
		// Moving: the batch so far goes first (the mover waits for it
		// before it sends Close 1012), then this message is held.
		flush()
		if !s.hold(appendFrame(nil, true, 0, msg.op, msg.payload, true)) {
			return
		}
	}
}

// hold keeps encoded frames while the session moves; past a bound the
// client gets 1013 and hold reports false.
func (s *Session) hold(frames []byte) bool {
	r := s.r
	n := int64(len(frames))
	s.mu.Lock()
	switch s.state.Load() {
	case stClosing:
		s.mu.Unlock()
		return true
	case stAttached:
		// The move finished meanwhile: send it on the new backend.
		b := s.b
		b.wmu.Lock()
		s.mu.Unlock()
		_, err := b.conn.Write(frames)
		b.wmu.Unlock()
		if err != nil {
			s.backendWriteFailed(b, frames)
		}
		return true
	}
	var cur int64
	if s.held != nil {
		cur = int64(len(*s.held))
	}
	if cur+n > r.cfg.MaxHeldPerSession || r.st.held.Load()+n > r.cfg.MaxHeldTotal {
		s.mu.Unlock()
		s.failClient(CloseTryAgainLater, "zd-queue: too much held while the backend changes", ReasonHeldLimit)
		return false
	}
	if s.held == nil {
		s.held = getBuf()
	}
	*s.held = append(*s.held, frames...)
	r.st.held.Add(n)
	s.mu.Unlock()
	return true
}

// backendWriteFailed handles frames that did not reach backend b whole
// because its connection failed: they are held for the next backend and
// the session moves (unless it is moving or closing already).
func (s *Session) backendWriteFailed(b *backendConn, rest []byte) {
	b.conn.Close() // ends its read loop, which the mover waits for
	s.mu.Lock()
	if s.b == b && s.state.Load() == stAttached {
		s.startMoveLocked(true)
	}
	s.mu.Unlock()
	if len(rest) > 0 {
		s.hold(append([]byte(nil), rest...))
	}
}

// clientClosed handles the client's Close frame.
func (s *Session) clientClosed(payload []byte) {
	code, reason, err := parseClose(payload)
	if err != nil {
		s.clientFailed(err)
		return
	}
	s.mu.Lock()
	// A Close that comes while the session moves waits for the move to
	// end (the mover is bounded by ReattachTimeout): the messages the
	// client sent before it are held, and go to the new backend first;
	// then the Close goes there as on an attached session. If no backend
	// takes the session, the client has been sent 1012 already.
	for s.state.Load() == stMoving && s.moveDone != nil {
		done := s.moveDone
		s.mu.Unlock()
		<-done
		s.mu.Lock()
	}
	prev := s.state.Load()
	s.toClosing()
	b := s.b
	s.mu.Unlock()
	if prev == stClosing {
		return // the reply to our Close
	}
	s.countEnd(code, ReasonClient)
	reply := code
	if reply == CloseGoingAway {
		reply = CloseNormal // never 1001 to a client, not even as an echo
	}
	if prev != stAttached || b == nil {
		s.writeClientControl(opClose, closePayload(reply, ""))
		return
	}
	// What the backend still sends before its Close reply reaches the
	// client; then our reply goes (backendLoop sends it when it ends).
	s.mu.Lock()
	s.replyCode = reply
	s.replyPending.Store(true)
	s.mu.Unlock()
	s.closeBackend(b, code, reason)
	<-b.done
}

// clientFailed handles a client that broke the protocol or dropped.
func (s *Session) clientFailed(err error) {
	var ce *CloseError
	isCE := errors.As(err, &ce)
	s.mu.Lock()
	if s.rs != nil && !isCE && s.state.Load() != stClosing {
		// A resumable session outlives its stream: Run detaches it.
		s.rs.dropped = true
		s.mu.Unlock()
		return
	}
	prev := s.state.Load()
	s.toClosing()
	b := s.b
	s.mu.Unlock()
	if isCE {
		reason := ReasonClientProtocol
		if ce.Code == CloseTooBig {
			reason = ReasonTooBig
		}
		if prev != stClosing {
			s.countEnd(ce.Code, reason)
		}
		s.writeClientControl(opClose, closePayload(ce.Code, ce.Reason))
		s.lingerClient()
	} else if prev != stClosing {
		s.countEnd(s.goneReason())
	}
	if prev == stAttached && b != nil {
		s.closeBackend(b, CloseGoingAway, "client went away")
	}
}

// lingerClient reads and drops what the client still sends after our
// Close for its protocol error, bounded in time and bytes, so the kernel
// does not answer its last bytes with a reset that would destroy the Close
// frame before the client read it.
func (s *Session) lingerClient() {
	// Half-closing tells the client we are done (it reads EOF after our
	// Close), so a client that closes then ends the linger at once.
	if cw, ok := s.client.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	t := time.AfterFunc(s.r.cfg.CloseTimeout, func() { s.client.Close() })
	defer t.Stop()
	s.cr.release()
	var buf [512]byte
	for n := 0; n < 64<<20; {
		m, err := s.client.Read(buf[:])
		n += m
		if err != nil {
			return
		}
	}
}
