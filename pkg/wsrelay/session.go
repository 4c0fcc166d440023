package wsrelay

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Session states. They change under Session.mu; the atomic copy lets the
// loops look without the lock.
const (
	stAttached = iota // messages flow to and from s.b
	stMoving          // client→backend messages are held; a mover finds a new backend
	stClosing         // the session ends: nothing more is relayed
)

// Session is one client WebSocket, above any one backend attempt.
type Session struct {
	r        *Relay
	id       string
	req      *Request
	deflate  bool
	dp       deflateParams
	protocol string

	client io.ReadWriteCloser
	cr     msgReader
	cw     sync.Mutex // client writes

	mu         sync.Mutex
	state      atomic.Int32
	b          *backendConn
	resume     int
	held       *[]byte // client→backend frames held while moving, encoded
	moveCancel context.CancelFunc
	moveDone   <-chan struct{} // closed when the current (or last) mover ends
	wg         sync.WaitGroup  // backend loops and movers
	ended      bool            // the end was counted
	closeTimer *time.Timer     // closes the client stream when no Close reply comes
	// The client closed: its Close reply (replyCode) goes once the backend's
	// remaining messages and its Close reply were forwarded.
	replyPending atomic.Bool
	replyCode    uint16

	rs *resumeState // nil unless the client asked for a resumable session
	ka keepalive    // pings to the client (keepalive.go)

	snap sessionSnap // for EachSession (snapshot.go)

	// A handle Open returns for a resume is not a session of its own: its
	// Run attaches the stream to resumeOf (received: what the client has;
	// deflate, dp: this stream's negotiation), or sends refusal.
	resumeOf *Session
	received uint64
	refusal  *refusal

	stopAsked bool // Shutdown was called (under r.mu)
}

// transport is the client's protocol for counting ("h1" when unsaid).
func (s *Session) transport() string {
	if s.req.Transport == "" {
		return "h1"
	}
	return s.req.Transport
}

// ID is the session's Zd-Session-Id.
func (s *Session) ID() string { return s.id }

// Open checks the bound on sessions, negotiates permessage-deflate with the
// client's offer and attaches a first backend (waiting for one up to
// ReattachTimeout). The returned Response's fields go into the client's
// handshake answer; then Run relays. Errors: ErrTooManySessions, a
// *RefusedError (the backend's answer, for the client as it is), or why no
// backend could be attached.
func (r *Relay) Open(ctx context.Context, req *Request) (*Session, *Response, error) {
	s, resp, err := r.open(ctx, req)
	if resp != nil {
		echoResumeToken(resp.Header, req.Header)
	}
	return s, resp, err
}

func (r *Relay) open(ctx context.Context, req *Request) (*Session, *Response, error) {
	tok, rest, asked, terr := parseResumeOffer(req.Header["Sec-Websocket-Protocol"])
	if asked {
		switch {
		case terr != nil:
			return r.refuse(ResumeMalformed, terr.Error(), 0)
		case r.cfg.ResumeWindow <= 0:
			return r.refuse(ResumeOff, "this zd-queue does not resume sessions; connect without the zd-resume token", 0)
		}
		req = withProtocols(req, rest)
		if tok.resume {
			return r.openResume(req, tok)
		}
	}
	if r.st.sessions.Add(1) > int64(r.cfg.MaxSessions) {
		r.st.sessions.Add(-1)
		r.st.refused.Add(1)
		return nil, nil, ErrTooManySessions
	}
	s := &Session{r: r, id: newSessionID(), req: req}
	s.snap.opened = time.Now()
	if asked {
		s.rs = &resumeState{key: secretKey(tok.secret), cred: credentialHash(req.Header), wake: make(chan struct{}, 1)}
		if !r.reserveResumable(s) {
			r.st.sessions.Add(-1)
			return r.refuse(ResumeConflict, "a live session has this secret; choose a new random one", 0)
		}
	}
	resp := &Response{Header: http.Header{}}
	if !r.cfg.NoCompression {
		if ext, p, ok := negotiateDeflate(req.Header["Sec-Websocket-Extensions"]); ok {
			s.deflate, s.dp = true, p
			s.snap.extension = ext
			resp.Header.Set("Sec-WebSocket-Extensions", ext)
		}
	}
	deadline := time.Now().Add(r.cfg.ReattachTimeout)
	bc, err := s.dial(ctx, 0, false, &deadline)
	if err != nil {
		r.st.sessions.Add(-1)
		if s.rs != nil {
			r.forgetResumable(s, "", 0)
		}
		return nil, nil, err
	}
	s.b = bc
	s.protocol = bc.protocol
	for k, vv := range bc.header {
		resp.Header[k] = vv
	}
	bc.header = nil
	if bc.protocol != "" {
		resp.Header.Set("Sec-WebSocket-Protocol", bc.protocol)
	}
	r.st.sessionsTotal.Add(1)
	return s, resp, nil
}

// withProtocols returns req with its subprotocol offer replaced by protos
// (the zd-resume token taken out), leaving the caller's fields as they are.
func withProtocols(req *Request, protos []string) *Request {
	c := *req
	c.Header = req.Header.Clone()
	c.Header.Del("Sec-Websocket-Protocol")
	if len(protos) > 0 {
		c.Header.Set("Sec-Websocket-Protocol", strings.Join(protos, ", "))
	}
	return &c
}

// Abort ends a session Open returned that will never Run (its client's
// transport failed before the handshake answer went out): the backend
// connection is closed and the session is not counted as open.
func (s *Session) Abort() {
	if s.resumeOf != nil || s.refusal != nil {
		return
	}
	s.b.conn.Close()
	s.r.st.sessions.Add(-1)
	if s.rs != nil {
		s.r.forgetResumable(s, "", 0)
	}
}

// Run relays the session over stream (an HTTP/1.1 connection after its
// 101, or an h2/h3 stream after its 200) until it ends; carried are bytes
// already read from stream after the handshake. Run closes stream.
func (s *Session) Run(stream io.ReadWriteCloser, carried []byte) {
	switch {
	case s.refusal != nil:
		s.runRefusal(stream, carried)
		return
	case s.resumeOf != nil:
		s.resumeOf.runResumed(s, s.resumeOf.wrapClient(stream), carried)
		return
	}
	r := s.r
	r.wg.Add(1)
	defer r.wg.Done()
	s.cw.Lock()
	s.client = s.wrapClient(stream)
	s.cw.Unlock()
	s.cr.fr.init(stream, carried)
	s.cr.expectMasked = true
	s.cr.deflate = s.deflate
	s.cr.maxMessage = r.cfg.MaxMessage
	s.b.rd.maxMessage = r.cfg.MaxMessage

	r.mu.Lock()
	r.all[s] = struct{}{}
	stop := s.stopAsked
	r.mu.Unlock()
	if s.rs != nil {
		// The answer goes before any backend message.
		s.mu.Lock()
		s.rs.runDone = make(chan struct{})
		s.mu.Unlock()
		s.cw.Lock()
		s.rs.live, s.rs.gen = true, 1
		if err := s.sendAnswerLocked(answer{status: "new", window: int64(r.cfg.ResumeWindow / time.Second)}); err != nil {
			stream.Close()
		}
		s.cw.Unlock()
	}
	s.mu.Lock()
	r.attached(s, "", s.b.name)
	s.startBackend(s.b)
	s.mu.Unlock()
	s.startKeepalive()
	if r.ctx.Err() != nil || stop {
		go s.shutdown()
	}

	s.clientLoop()
	if s.rs != nil && s.detachAfter(stream) {
		return
	}
	s.finish(stream)
}

// finish tears a session down once its client loop is done (stream, which
// it closes) or, for a detached session, from its warden (stream nil).
func (s *Session) finish(stream io.ReadWriteCloser) {
	r := s.r
	s.mu.Lock()
	s.toClosing()
	b := s.b
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	detached := s.rs != nil && s.rs.detached
	s.mu.Unlock()
	s.stopKeepalive()
	if stream != nil {
		stream.Close()
	}
	// The backend's close handshake was started on every way here; this
	// bounds it.
	var t *time.Timer
	if b != nil {
		t = time.AfterFunc(r.cfg.CloseTimeout+time.Second, func() { b.conn.Close() })
	}
	s.wg.Wait()
	if t != nil {
		t.Stop()
	}
	s.cr.release()
	s.mu.Lock()
	if s.held != nil {
		r.st.held.Add(-int64(len(*s.held)))
		putBuf(s.held)
		s.held = nil
	}
	r.attached(s, s.nameLocked(), "")
	s.mu.Unlock()
	if s.rs != nil {
		s.cw.Lock()
		r.st.replay.Add(-s.rs.ring.reset())
		s.rs.live = false
		s.cw.Unlock()
		s.mu.Lock()
		tomb, code := s.rs.tomb, s.rs.tombCode
		s.mu.Unlock()
		if tomb == "" {
			tomb = ResumeEnded
		}
		r.forgetResumable(s, tomb, code)
		if detached {
			r.st.detached.Add(-1)
		}
	}
	r.mu.Lock()
	delete(r.all, s)
	r.mu.Unlock()
	r.st.sessions.Add(-1)
}

func (s *Session) nameLocked() string {
	if s.b == nil {
		return ""
	}
	return s.b.name
}

// toClosing enters stClosing; s.mu is held. It stops a mover's dials.
func (s *Session) toClosing() {
	if s.state.Load() == stMoving {
		s.r.st.moving.Add(-1)
	}
	s.state.Store(stClosing)
	if s.moveCancel != nil {
		s.moveCancel()
	}
	if s.rs != nil && s.rs.detached {
		s.wakeWarden()
	}
}

func (s *Session) countEnd(code uint16, reason string) {
	s.mu.Lock()
	first := !s.ended
	s.ended = true
	if first && s.rs != nil && s.rs.tomb == "" {
		s.rs.tomb, s.rs.tombCode = ResumeEnded, code
	}
	s.mu.Unlock()
	if first {
		s.r.st.close(code, reason)
	}
}

// writeClient sends frames to the client; a failed write closes the
// stream so the client loop ends.
func (s *Session) writeClient(b []byte) error {
	s.cw.Lock()
	c := s.client
	_, err := c.Write(b)
	s.cw.Unlock()
	if err != nil {
		c.Close()
	}
	return err
}

func (s *Session) writeClientControl(op byte, payload []byte) error {
	var buf [maxHeaderLen + maxControlPayload]byte
	return s.writeClient(appendFrame(buf[:0], true, 0, op, payload, false))
}

// closeClient sends Close(code) to the client and closes its stream if no
// reply came within CloseTimeout.
func (s *Session) closeClient(code uint16, reason string) {
	s.writeClientControl(opClose, closePayload(code, reason))
	s.cw.Lock()
	c := s.client
	s.cw.Unlock()
	t := time.AfterFunc(s.r.cfg.CloseTimeout, func() { c.Close() })
	s.mu.Lock()
	if s.closeTimer != nil {
		s.closeTimer.Stop()
	}
	s.closeTimer = t
	s.mu.Unlock()
}

// failClient ends the session from the relay's side: Close(code) to the
// client (never 1001), and the backend is told the client went away.
func (s *Session) failClient(code uint16, reason, counted string) {
	s.mu.Lock()
	if s.state.Load() == stClosing {
		s.mu.Unlock()
		return
	}
	s.toClosing()
	b := s.b
	s.mu.Unlock()
	s.countEnd(code, counted)
	if counted == ReasonHeldLimit || counted == ReasonReattachTimeout || counted == ReasonReattachRefused {
		s.r.st.failed.Add(1)
	}
	if b != nil {
		s.closeBackend(b, CloseGoingAway, "client session ended")
	}
	s.closeClient(code, reason)
}

// Shutdown ends the session as Relay.Close ends every session: Close 1012
// (Service Restart) to the client, whose reply (or CloseTimeout) ends
// Run. It returns at once and may be called before Run (Run then ends the
// session as soon as it starts), while it runs, after, and more than once.
// A server whose transport outlives the relay's sessions only by its own
// grace (HTTP/2, HTTP/3) calls it on a graceful stop, so its clients get a
// WebSocket close instead of a torn connection.
func (s *Session) Shutdown() {
	r := s.r
	r.mu.Lock()
	s.stopAsked = true
	_, running := r.all[s]
	if running {
		// Run holds r.wg while s is in r.all: this Add cannot race a Wait at zero.
		r.wg.Add(1)
	}
	r.mu.Unlock()
	if running {
		go func() {
			defer r.wg.Done()
			s.shutdown()
		}()
	}
}

// shutdown is Relay.Close's end of a session.
func (s *Session) shutdown() {
	s.failClient(CloseServiceRestart, "zd-queue is restarting", ReasonShutdown)
}

// closeBackend sends Close to a backend and closes its connection once
// it replied (its read loop ended) or CloseTimeout passed.
func (s *Session) closeBackend(b *backendConn, code uint16, reason string) {
	b.wmu.Lock()
	var buf [maxHeaderLen + maxControlPayload]byte
	b.conn.SetWriteDeadline(time.Now().Add(s.r.cfg.CloseTimeout))
	b.conn.Write(appendFrame(buf[:0], true, 0, opClose, closePayload(code, reason), true))
	b.wmu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.r.cfg.CloseTimeout)
		defer t.Stop()
		select {
		case <-b.done:
		case <-t.C:
		}
		b.conn.Close()
	}()
}

// startBackend runs b's read loop; s.mu is held.
func (s *Session) startBackend(b *backendConn) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.backendLoop(b)
	}()
}
