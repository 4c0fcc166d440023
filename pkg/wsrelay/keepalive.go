package wsrelay

import (
	"errors"
	"io"
	"math"
	"os"
	"sync/atomic"
	"time"
)

// The client's connection lives in the relay, so the relay itself finds
// out when a client is gone without a word (a half-open connection: the
// host vanished, a NAT forgot it) or stops reading. Both would otherwise
// hold a session, and the backend's side of it, for ever.
//
//   - Keepalive: a client the relay heard nothing from for PingInterval
//     gets a Ping; if nothing (its Pong, or any frame) comes within
//     PongTimeout, the session ends as if the stream dropped: counted
//     1006 "ping-timeout" (no Close frame: nobody would read it), the
//     backend gets Close 1001. The relay's pings and the client's pongs
//     are control frames between the client and the relay only: never
//     sent to a backend, never counted as messages, never in a resumable
//     session's counts or replay.
//   - Write bound: a write to the client that makes no progress for
//     WriteTimeout fails; the session ends counted 1008 "write-timeout"
//     (RFC 6455's Policy Violation: the client broke the relay's rule that
//     it reads what it is sent). The Close frame cannot reach a client
//     that does not read, so the relay closes the connection; the client
//     sees it drop (1006 on its side). Until then the relay holds at most
//     the one batch it is writing: the backend's messages wait in the
//     backend's socket, not in zd-queue.

// keepalive is a session's ping state; its timer's callback is tick.
type keepalive struct {
	t      *time.Timer
	heard  atomic.Bool // a frame came from the client since the last tick
	pinged atomic.Bool // a ping went and its answer is awaited
	dead   atomic.Bool // no answer came: the stream was closed for it
}

// startKeepalive arms the session's pings, unless they are off.
func (s *Session) startKeepalive() {
	if s.r.cfg.PingInterval <= 0 {
		return
	}
	// Armed only once stored, so tick always sees the timer.
	s.ka.t = time.AfterFunc(time.Duration(math.MaxInt64), s.tick)
	s.ka.t.Reset(s.r.cfg.PingInterval)
}

// stopKeepalive disarms them; a tick already running sees the session
// closing and does not re-arm.
func (s *Session) stopKeepalive() {
	if s.ka.t != nil {
		s.ka.t.Stop()
	}
}

// heard notes that the client sent a frame (it is alive).
func (s *Session) heard() {
	if !s.ka.heard.Load() {
		s.ka.heard.Store(true)
	}
}

// ponged notes the client's Pong: when it answers our ping, the next ping
// is due PingInterval from now.
func (s *Session) ponged() {
	if s.ka.t != nil && s.ka.pinged.CompareAndSwap(true, false) {
		s.ka.heard.Store(false)
		s.ka.t.Reset(s.r.cfg.PingInterval)
	}
}

func (s *Session) tick() {
	if s.state.Load() == stClosing {
		return
	}
	cfg := &s.r.cfg
	if s.ka.heard.Swap(false) {
		s.ka.pinged.Store(false)
		s.ka.t.Reset(cfg.PingInterval)
		return
	}
	s.cw.Lock()
	c := s.client
	if s.rs != nil && !s.rs.live {
		// Detached: no stream to ping; the resume window bounds it.
		s.cw.Unlock()
		s.ka.pinged.Store(false)
		s.ka.t.Reset(cfg.PingInterval)
		return
	}
	if s.ka.pinged.Load() {
		s.cw.Unlock()
		s.ka.dead.Store(true)
		c.Close() // the client loop ends: clientFailed counts ping-timeout
		return
	}
	s.ka.pinged.Store(true) // before the write: its Pong may come at once
	s.ka.t.Reset(cfg.PongTimeout)
	var buf [maxHeaderLen + 2]byte
	_, err := c.Write(appendFrame(buf[:0], true, 0, opPing, []byte("zd"), false))
	s.cw.Unlock()
	if err != nil {
		c.Close()
	}
}

// goneReason is the code and reason a client that dropped without a Close
// is counted with.
func (s *Session) goneReason() (uint16, string) {
	s.cw.Lock()
	cs, _ := s.client.(*clientStream)
	s.cw.Unlock()
	switch {
	case cs != nil && cs.timedOut.Load():
		return ClosePolicyViolation, ReasonWriteTimeout
	case s.ka.dead.Load():
		return CloseAbnormal, ReasonPingTimeout
	}
	return CloseAbnormal, ReasonClientGone
}

// clientStream bounds the relay's writes to a client stream by
// WriteTimeout. Writes hold Session.cw.
type clientStream struct {
	io.ReadWriteCloser
	timeout  time.Duration
	dl       interface{ SetWriteDeadline(time.Time) error } // nil: a timer closes the stream instead
	armed    time.Time                                      // when the deadline was last set
	timer    *time.Timer
	timedOut atomic.Bool
}

// wrapClient returns stream with its writes bounded, or as it is when
// WriteTimeout is off.
func (s *Session) wrapClient(stream io.ReadWriteCloser) io.ReadWriteCloser {
	if s.r.cfg.WriteTimeout <= 0 {
		return stream
	}
	c := &clientStream{ReadWriteCloser: stream, timeout: s.r.cfg.WriteTimeout}
	if d, ok := stream.(interface{ SetWriteDeadline(time.Time) error }); ok {
		c.dl = d
	}
	return c
}

// Write fails once WriteTimeout passes with no byte taken. Setting a
// deadline costs a timer update, so it is renewed only when a sixteenth of
// the bound went by since: the bound is between 15/16 of WriteTimeout and
// all of it.
func (c *clientStream) Write(p []byte) (int, error) {
	if c.dl == nil {
		return c.writeTimed(p)
	}
	done := 0
	for {
		if now := time.Now(); now.Sub(c.armed) > c.timeout/16 {
			c.dl.SetWriteDeadline(now.Add(c.timeout))
			c.armed = now
		}
		n, err := c.ReadWriteCloser.Write(p[done:])
		done += n
		switch {
		case err == nil:
			return done, nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return done, err
		case n == 0:
			c.timedOut.Store(true)
			return done, err
		}
		// The client took some: it reads, if slowly. The rest gets a
		// bound of its own.
		c.armed = time.Time{}
	}
}

// writeTimed is Write on a stream without deadlines (an h2 or h3 stream
// may have none): a timer closes the stream if the write takes too long.
func (c *clientStream) writeTimed(p []byte) (int, error) {
	if c.timer == nil {
		c.timer = time.AfterFunc(c.timeout, func() {
			c.timedOut.Store(true)
			c.ReadWriteCloser.Close()
		})
	} else {
		c.timer.Reset(c.timeout)
	}
	n, err := c.ReadWriteCloser.Write(p)
	c.timer.Stop()
	return n, err
}

// CloseWrite half-closes the stream when it can (lingerClient).
func (c *clientStream) CloseWrite() error {
	if cw, ok := c.ReadWriteCloser.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
