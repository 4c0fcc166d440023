package wsrelay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// requestMove starts moving the session if it is attached to backend and
// returns a channel closed when that move ends (nil: none was started).
func (s *Session) requestMove(backend string) <-chan struct{} {
	var done <-chan struct{}
	s.mu.Lock()
	if s.state.Load() == stAttached && s.b != nil && s.b.name == backend {
		done = s.startMoveLocked(false)
	}
	s.mu.Unlock()
	return done
}

// startMoveLocked enters stMoving and starts the mover; s.mu is held.
// gone says the old backend's connection is finished already (it closed
// with 1001/1012 or dropped): no Close 1012 is sent to it. The channel
// returned is closed when the move ends, re-attached or not.
func (s *Session) startMoveLocked(gone bool) <-chan struct{} {
	s.state.Store(stMoving)
	s.r.st.moving.Add(1)
	ctx, cancel := context.WithCancel(s.r.ctx) // move bounds the wait: ReattachTimeout
	s.moveCancel = cancel
	old := s.b
	done := make(chan struct{})
	s.moveDone = done
	s.wg.Add(1)
	s.r.goMove(func() {
		defer s.wg.Done()
		defer close(done)
		defer cancel()
		s.move(ctx, old, gone)
	})
	return done
}

// move is the barrier of DESIGN.md: client→backend messages are held
// already; Close 1012 goes to the old backend, whatever it still sends is
// forwarded until its Close reply; then a ready backend is dialled with
// Zd-Resume, the held messages are flushed, and the session carries on.
func (s *Session) move(ctx context.Context, old *backendConn, gone bool) {
	r := s.r
	start := time.Now()
	deadline := start.Add(r.cfg.ReattachTimeout)
	// The Close reply is waited for CloseTimeout: the connection's
	// deadline ends the old backend's read loop (and any write to it)
	// then, with no timer of the move's own; a connection that takes no
	// deadline gets a timer instead.
	bounded := old.conn.SetDeadline(start.Add(r.cfg.CloseTimeout)) == nil
	if !gone {
		// Wait for the client loop's batch to that backend to be written
		// (or to fail), so the Close goes after every message sent before
		// the barrier and nothing is written to the old backend after it.
		old.wmu.Lock()
		var buf [maxHeaderLen + maxControlPayload]byte
		var pb [maxControlPayload]byte
		old.conn.Write(appendFrame(buf[:0], true, 0, opClose, appendClosePayload(pb[:0], CloseServiceRestart, "zd-queue: moving the session"), true))
		old.wmu.Unlock()
	}
	if bounded {
		<-old.done
	} else {
		t := time.NewTimer(r.cfg.CloseTimeout)
		select {
		case <-old.done:
		case <-t.C:
			old.conn.Close()
			<-old.done
		}
		t.Stop()
	}
	old.conn.Close()
	// A batch the client loop was writing has failed or finished by now;
	// its unwritten frames are held.
	old.wmu.Lock()
	//lint:ignore SA2001 taking the lock is the wait: the client loop holds it while it writes
	old.wmu.Unlock()
	// The old backend is done with the session: a Drain of it need not
	// wait for the next backend (with --exclusive there is none until the
	// old one is stopped). The session waits here, bounded.
	r.attached(s, old.name, "")

	for {
		s.mu.Lock()
		resume := s.resume + 1
		s.mu.Unlock()
		nb, err := s.dial(ctx, resume, gone, &deadline)
		if err != nil {
			if s.state.Load() == stClosing {
				return
			}
			var ref *RefusedError
			if errors.As(err, &ref) {
				s.failClient(CloseServiceRestart, "zd-queue: the backend refused the session", ReasonReattachRefused)
			} else {
				r.cfg.Logger.Warn("WebSocket session not re-attached", "session", s.id, "err", err)
				s.failClient(CloseServiceRestart, "zd-queue: no backend took the session in time", ReasonReattachTimeout)
			}
			return
		}
		nb.rd.maxMessage = r.cfg.MaxMessage
		s.mu.Lock()
		if s.state.Load() != stMoving {
			s.mu.Unlock()
			nb.conn.Close()
			return
		}
		// Flush under s.mu: the client loop waits, so held messages go
		// before anything it reads next.
		var rest []byte
		if s.held != nil && len(*s.held) > 0 {
			nb.conn.SetWriteDeadline(time.Now().Add(r.cfg.CloseTimeout))
			n, err := nb.conn.Write(*s.held)
			nb.conn.SetWriteDeadline(time.Time{})
			if err != nil {
				rest = unwritten(*s.held, n)
			}
			r.st.held.Add(-int64(len(*s.held) - len(rest)))
			if rest != nil {
				*s.held = append((*s.held)[:0], rest...)
			} else {
				putBuf(s.held)
				s.held = nil
			}
		}
		if rest != nil {
			// The new backend failed at once: try another.
			s.mu.Unlock()
			nb.conn.Close()
			continue
		}
		prev := s.b.name
		s.b = nb
		s.resume = resume
		s.state.Store(stAttached)
		s.moveCancel = nil
		r.st.moving.Add(-1)
		r.attached(s, prev, nb.name)
		s.startBackend(nb)
		s.mu.Unlock()
		d := time.Since(start)
		r.st.moved.Add(1)
		r.st.move(d)
		if r.cfg.OnMove != nil {
			r.cfg.OnMove(d)
		}
		return
	}
}

// dial attaches a backend: it asks Config.Dial and handshakes, again and
// again (backing off) until one takes the session, ctx ends or *deadline
// passes (then the error wraps context.DeadlineExceeded). Re-attach dials
// (resume > 0) are paced: at most MaxDials at once, each after a random
// wait of up to DialJitter when jitter is set (sessions whose backend went
// all at once; a Drain paces its moves itself). A wait for a dial slot
// during which other sessions were re-attached moves *deadline on by as
// long: the deadline bounds the wait for a backend that takes the
// session, and a session queued behind others' dials while a backend
// takes them is not waiting for one (1,600 sessions of a killed worker,
// re-attaching to a ready one slowed by load, got 1012 while it took
// every dial). With no re-attach meanwhile (no backend takes any) the
// wait counts, so the deadline still comes as before. A 4xx refusal is
// final.
func (s *Session) dial(ctx context.Context, resume int, jitter bool, deadline *time.Time) (*backendConn, error) {
	r := s.r
	backoff := 10 * time.Millisecond
	var last error
	for {
		if resume > 0 {
			// The random wait comes first, without a dial slot, so a
			// thousand sessions moving at once spread out instead of
			// queueing in the order Drain found them.
			if j := r.cfg.DialJitter; j > 0 && jitter {
				if err := sleepUntil(ctx, rand.N(j), *deadline); err != nil {
					return nil, dialErr(last, err)
				}
			}
			queued, moved := time.Now(), r.st.moved.Load()
			select {
			case r.dials <- struct{}{}:
			case <-ctx.Done():
				return nil, dialErr(last, ctx.Err())
			}
			if r.st.moved.Load() != moved {
				*deadline = deadline.Add(time.Since(queued))
			}
		}
		actx, cancel := context.WithDeadline(ctx, *deadline)
		bc, err := s.dialOnce(actx, resume)
		cancel()
		if resume > 0 {
			<-r.dials
		}
		if err == nil {
			return bc, nil
		}
		last = err
		var ref *RefusedError
		if errors.As(err, &ref) && (resume == 0 || ref.Status < 500) {
			return nil, err
		}
		if err := sleepUntil(ctx, backoff/2+rand.N(backoff), *deadline); err != nil {
			return nil, dialErr(last, err)
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// sleepUntil sleeps d, or until deadline (then context.DeadlineExceeded)
// or ctx ends.
func sleepUntil(ctx context.Context, d time.Duration, deadline time.Time) error {
	left := time.Until(deadline)
	if left >= d {
		return sleepCtx(ctx, d)
	}
	if left > 0 {
		if err := sleepCtx(ctx, left); err != nil {
			return err
		}
	}
	return context.DeadlineExceeded
}

func (s *Session) dialOnce(ctx context.Context, resume int) (*backendConn, error) {
	conn, name, err := s.r.cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	bc, err := handshake(ctx, conn, s.req, s.id, resume, s.r.cfg.HandshakeTimeout)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	if resume > 0 && bc.protocol != s.protocol {
		conn.Close()
		return nil, fmt.Errorf("backend %s chose subprotocol %q, the session has %q", name, bc.protocol, s.protocol)
	}
	bc.name = name
	return bc, nil
}

func dialErr(last, ctxErr error) error {
	if last == nil {
		return ctxErr
	}
	return fmt.Errorf("%w (last attempt: %w)", ctxErr, last)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
