package wsrelay

import (
	"crypto/subtle"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// resumeState is what a resumable session has besides a plain one.
type resumeState struct {
	key  [32]byte // secretKey of the client's secret
	cred [32]byte // credentialHash of the first handshake

	fromClient atomic.Uint64 // client data messages read, over every stream

	// Under Session.cw (with the backend loop, which records there):
	ring replayRing
	live bool   // a client stream is attached: write to it
	gen  uint64 // which stream: a batch encoded for an old one is dropped

	// Under Session.mu:
	dropped  bool          // the client loop ended on a drop: detach, not end
	detached bool          // no stream; a warden goroutine waits for a resume
	runDone  chan struct{} // closed when the current stream's Run let go of it
	tomb     string        // why it ended, for a later resume (ResumeExpired, ResumeGap, ResumeEnded)
	tombCode uint16        // ResumeEnded: the code it ended with

	wake     chan struct{} // (cap 1) the warden looks again: closing, or resumed
	attachMu sync.Mutex    // one resume attaches at a time
}

// tombstone remembers an ended resumable session for a window, so a late
// resume is told why instead of "unknown".
type tombstone struct {
	reason string
	code   uint16
	until  time.Time
}

// Resumption's share of the Relay: under Relay.mu.
type resumeIndex struct {
	live  map[[32]byte]*Session
	tombs map[[32]byte]tombstone
	order [][32]byte // tombs in the order they were made (they expire in that order)
}

// maxTombs bounds the ended sessions remembered.
const maxTombs = 100_000

func (r *Relay) reserveResumable(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resume.live == nil {
		r.resume.live = map[[32]byte]*Session{}
		r.resume.tombs = map[[32]byte]tombstone{}
	}
	if _, ok := r.resume.live[s.rs.key]; ok {
		return false
	}
	r.resume.live[s.rs.key] = s
	delete(r.resume.tombs, s.rs.key)
	return true
}

// forgetResumable drops s from the index; when tomb is set it is
// remembered as ended for the resume window.
func (r *Relay) forgetResumable(s *Session, tomb string, code uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resume.live[s.rs.key] != s {
		return
	}
	delete(r.resume.live, s.rs.key)
	if tomb == "" {
		return
	}
	now := time.Now()
	for len(r.resume.order) > 0 {
		k := r.resume.order[0]
		t, ok := r.resume.tombs[k]
		if ok && now.Before(t.until) && len(r.resume.order) < maxTombs {
			break
		}
		if ok && !now.Before(t.until) || len(r.resume.order) >= maxTombs {
			delete(r.resume.tombs, k)
		}
		r.resume.order = r.resume.order[1:]
	}
	r.resume.tombs[s.rs.key] = tombstone{reason: tomb, code: code, until: now.Add(r.cfg.ResumeWindow)}
	r.resume.order = append(r.resume.order, s.rs.key)
}

func (r *Relay) lookupResumable(key [32]byte) (*Session, tombstone, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.resume.live[key]; s != nil {
		return s, tombstone{}, true
	}
	t, ok := r.resume.tombs[key]
	if ok && time.Now().After(t.until) {
		ok = false
	}
	return nil, t, ok
}

// refusal is a resume that gets an answer and a Close instead of a
// session. It is still a completed handshake (see resume.go).
type refusal struct {
	reason string
	closed uint16
	detail string
}

// refuse returns the handle Open gives for a refused resume; its Run
// sends the refusal.
func (r *Relay) refuse(reason, detail string, closed uint16) (*Session, *Response, error) {
	r.st.resumeRefused(reason)
	h := http.Header{}
	h.Set(resumeHeaderOut, reason)
	return &Session{r: r, refusal: &refusal{reason, closed, detail}}, &Response{Header: h}, nil
}

// openResume answers a SECRET.RECEIVED token: a handle whose Run attaches
// the stream to the session, or a refusal.
func (r *Relay) openResume(req *Request, tok resumeToken) (*Session, *Response, error) {
	s, tomb, dead := r.lookupResumable(secretKey(tok.secret))
	if s == nil {
		if dead {
			return r.refuse(tomb.reason, tombDetail(tomb), tomb.code)
		}
		return r.refuse(ResumeUnknown, "no session has this secret (never, or it ended longer than the resume window ago)", 0)
	}
	cred := credentialHash(req.Header)
	if subtle.ConstantTimeCompare(cred[:], s.rs.cred[:]) != 1 {
		return r.refuse(ResumeCredentials, "Origin, Cookie or Authorization differ from the session's first handshake", 0)
	}
	if s.protocol != "" && !offered(req.Header, s.protocol) {
		return r.refuse(ResumeSubprotocol, "the session speaks subprotocol "+strconv.Quote(s.protocol)+"; offer it", 0)
	}
	h := &Session{r: r, id: s.id, resumeOf: s, received: tok.received}
	resp := &Response{Header: http.Header{}}
	if !r.cfg.NoCompression {
		if ext, p, ok := negotiateDeflate(req.Header["Sec-Websocket-Extensions"]); ok {
			h.deflate, h.dp = true, p
			resp.Header.Set("Sec-WebSocket-Extensions", ext)
		}
	}
	if s.protocol != "" {
		resp.Header.Set("Sec-WebSocket-Protocol", s.protocol)
	}
	return h, resp, nil
}

func tombDetail(t tombstone) string {
	switch t.reason {
	case ResumeExpired:
		return "the client stayed away longer than the resume window; the session ended"
	case ResumeGap:
		return "messages the client missed were over the bound held for it; the session ended"
	}
	return "the session ended with close code " + strconv.Itoa(int(t.code))
}

// writeRefusal sends a refusal's answer and Close on stream and waits,
// bounded, for the client's Close reply.
func (r *Relay) writeRefusal(stream io.ReadWriteCloser, carried []byte, ref *refusal) {
	a := answer{status: "refused", reason: ref.reason, closed: ref.closed, detail: ref.detail}
	var out []byte
	out = appendFrame(out, true, 0, opText, a.json(), false)
	out = appendFrame(out, true, 0, opClose, closePayload(ResumeCode(ref.reason), "zd-resume: "+ref.reason), false)
	t := time.AfterFunc(r.cfg.CloseTimeout, func() { stream.Close() })
	defer t.Stop()
	defer stream.Close()
	if _, err := stream.Write(out); err != nil {
		return
	}
	var m msgReader
	m.expectMasked, m.maxMessage = true, 64<<10
	m.fr.init(stream, carried)
	defer m.release()
	for range 64 {
		msg, err := m.next()
		if err != nil || msg.op == opClose {
			return
		}
	}
}

// runRefusal is Run of a refusal handle.
func (s *Session) runRefusal(stream io.ReadWriteCloser, carried []byte) {
	s.r.wg.Add(1)
	defer s.r.wg.Done()
	s.r.writeRefusal(stream, carried, s.refusal)
}

// sendAnswer writes a resumable stream's first message; s.cw is held.
func (s *Session) sendAnswerLocked(a answer) error {
	_, err := s.client.Write(appendFrame(nil, true, 0, opText, a.json(), false))
	return err
}

// record keeps a backend→client message for replay; s.cw is held. While
// a client is attached the oldest are forgotten past the bounds; while it
// is away over reports a bound passed (the session must end).
func (s *Session) recordLocked(op byte, p []byte) (over bool) {
	r, rs := s.r, s.rs
	r.st.replay.Add(rs.ring.push(op, p))
	per, total := r.cfg.MaxReplayPerSession, r.cfg.MaxReplayTotal
	if !rs.live {
		return rs.ring.bytes > per || r.st.replay.Load() > total
	}
	for rs.ring.len() > 0 && (rs.ring.bytes > per || r.st.replay.Load() > total) {
		r.st.replay.Add(-rs.ring.pop())
	}
	return false
}

// detachAfter ends a stream of a resumable session whose client dropped:
// the session stays (backend and all) for the resume window, watched by a
// warden. It reports false when the session is ending instead.
func (s *Session) detachAfter(stream io.ReadWriteCloser) bool {
	r, rs := s.r, s.rs
	s.mu.Lock()
	if s.state.Load() == stClosing || !rs.dropped {
		s.mu.Unlock()
		return false
	}
	rs.dropped = false
	rs.detached = true
	done := rs.runDone
	s.mu.Unlock()
	s.cw.Lock()
	rs.live = false
	s.cw.Unlock()
	stream.Close()
	s.cr.release()
	r.st.detached.Add(1)
	r.wg.Add(1)
	go s.warden()
	close(done)
	return true
}

// warden owns a detached session: it ends it when the window passes, and
// tears it down when it ends meanwhile (its backend closed, the relay
// closed, a bound passed). A resume takes the session back from it.
func (s *Session) warden() {
	defer s.r.wg.Done()
	t := time.NewTimer(s.r.cfg.ResumeWindow)
	defer t.Stop()
	for {
		s.mu.Lock()
		back := !s.rs.detached
		closing := s.state.Load() == stClosing
		s.mu.Unlock()
		if back {
			return
		}
		if closing {
			s.finish(nil)
			return
		}
		select {
		case <-t.C:
			s.endDetached(ReasonResumeExpired, ResumeExpired)
		case <-s.rs.wake:
		}
	}
}

// wakeWarden tells a warden to look again.
func (s *Session) wakeWarden() {
	select {
	case s.rs.wake <- struct{}{}:
	default:
	}
}

// endDetached ends a session whose client is away: the backend is told
// the client went away; a later resume is told tomb.
func (s *Session) endDetached(counted, tomb string) {
	s.mu.Lock()
	if !s.rs.detached || s.state.Load() == stClosing {
		s.mu.Unlock()
		return
	}
	s.rs.tomb = tomb
	// Closing wakes the warden, whose finish waits for s.wg: count this
	// end in first, so that the Add in closeBackend does not race with
	// that Wait (it did, under -race, in TestResumeRefusals).
	s.wg.Add(1)
	defer s.wg.Done()
	s.toClosing()
	b := s.b
	s.mu.Unlock()
	s.countEnd(CloseAbnormal, counted)
	if b != nil {
		s.closeBackend(b, CloseGoingAway, "client went away")
	}
}

// runResumed is Run of a resume handle h: it takes the session back (from
// its warden, or from a stream the client left but zd-queue has not seen
// drop yet), answers, replays what the client missed and relays.
func (s *Session) runResumed(h *Session, stream io.ReadWriteCloser, carried []byte) {
	r, rs := s.r, s.rs
	r.wg.Add(1)
	defer r.wg.Done()
	rs.attachMu.Lock()
	refuse := func(reason, detail string, closed uint16) {
		rs.attachMu.Unlock()
		r.st.resumeRefused(reason)
		r.writeRefusal(stream, carried, &refusal{reason, closed, detail})
	}
	s.mu.Lock()
	detached, done := rs.detached, rs.runDone
	s.mu.Unlock()
	if !detached && done == nil {
		refuse(ResumeBusy, "the session has not started yet; try again", 0)
		return
	}
	if !detached && s.state.Load() != stClosing {
		// The client came back before its old stream was seen to drop:
		// close it and wait for its Run to let go.
		s.cw.Lock()
		old := s.client
		s.cw.Unlock()
		old.Close()
		t := time.NewTimer(r.cfg.CloseTimeout)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	s.mu.Lock()
	if s.state.Load() == stClosing {
		code := s.rs.tombCode
		s.mu.Unlock()
		refuse(ResumeEnded, "the session ended while the client was away", code)
		return
	}
	if !rs.detached {
		s.mu.Unlock()
		refuse(ResumeBusy, "the session's previous connection did not let go in time; try again", 0)
		return
	}
	s.cw.Lock()
	if h.received < rs.ring.base || h.received > rs.ring.next {
		base, next := rs.ring.base, rs.ring.next
		s.cw.Unlock()
		s.mu.Unlock()
		detail := "the client has " + strconv.FormatUint(h.received, 10) + " messages; zd-queue holds " +
			strconv.FormatUint(base, 10) + " to " + strconv.FormatUint(next, 10) + "; the session ends"
		if h.received > next {
			detail = "the client says it has " + strconv.FormatUint(h.received, 10) + " messages; only " +
				strconv.FormatUint(next, 10) + " were sent; the session ends"
		}
		s.endDetached(ReasonResumeGap, ResumeGap)
		refuse(ResumeGap, detail, 0)
		return
	}
	rs.detached = false
	s.wakeWarden()
	rs.runDone = make(chan struct{})
	s.client = stream
	rs.live = true
	rs.gen++
	s.deflate, s.dp = h.deflate, h.dp
	s.mu.Unlock()
	r.st.detached.Add(-1)
	r.st.resumed.Add(1)
	replay := rs.ring.from(h.received)
	err := s.sendAnswerLocked(answer{status: "resumed", have: rs.fromClient.Load(), replay: uint64(len(replay))})
	if err == nil {
		out := getBuf()
		for _, m := range replay {
			*out = s.appendClientFrame(*out, m.op, m.data)
			if len(*out) >= bigReadSize {
				if _, err = stream.Write(*out); err != nil {
					break
				}
				*out = (*out)[:0]
			}
		}
		if err == nil && len(*out) > 0 {
			_, err = stream.Write(*out)
		}
		putBuf(out)
	}
	if err != nil {
		stream.Close()
	}
	s.cw.Unlock()
	rs.attachMu.Unlock()

	s.cr = msgReader{}
	s.cr.fr.init(stream, carried)
	s.cr.expectMasked = true
	s.cr.deflate = h.deflate
	s.cr.maxMessage = r.cfg.MaxMessage
	s.clientLoop()
	if s.detachAfter(stream) {
		return
	}
	s.finish(stream)
}

// appendClientFrame encodes a message for the client, compressed when the
// stream negotiated permessage-deflate and the message is long enough.
func (s *Session) appendClientFrame(out []byte, op byte, p []byte) []byte {
	if s.deflate && len(p) >= s.r.cfg.CompressMin {
		z := getBuf()
		*z = deflateAppend((*z)[:0], p, s.dp.serverWindowBits)
		out = appendFrame(out, true, rsv1, op, *z, false)
		putBuf(z)
		return out
	}
	return appendFrame(out, true, 0, op, p, false)
}
