package echoapp

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// tracker follows every HTTP connection's state so that a draining server can
// close keep-alive connections without racing the client's next request:
// requests that still arrive are answered with "Connection: close", and a
// connection is closed under the client only after it has been idle for
// idleWait (a client that sends back to back is never idle that long).
type tracker struct {
	mu       sync.Mutex
	conns    map[net.Conn]connState
	draining bool
	closers  map[*wsSession]struct{}
}

type connState struct {
	state http.ConnState
	since time.Time
}

func newTracker() *tracker {
	return &tracker{conns: map[net.Conn]connState{}, closers: map[*wsSession]struct{}{}}
}

// ConnState is the http.Server hook.
func (t *tracker) ConnState(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, c)
	default:
		t.conns[c] = connState{state: s, since: time.Now()}
	}
}

// Wrap answers every request that arrives while draining with
// "Connection: close", so net/http closes that connection after the response.
func (t *tracker) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.isDraining() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

func (t *tracker) isDraining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}

// drain runs the draining protocol after the listeners were closed: it closes
// WebSocket sessions with 1012 (service restart: the client reconnects to
// another worker), then waits until every connection is gone, closing each
// keep-alive connection once it has been idle for idleWait. Past grace it
// closes whatever is left. It returns how many connections it had to cut.
func (t *tracker) drain(ctx context.Context, idleWait, grace time.Duration) int {
	t.mu.Lock()
	t.draining = true
	sessions := make([]*wsSession, 0, len(t.closers))
	for s := range t.closers {
		sessions = append(sessions, s)
	}
	t.mu.Unlock()
	for _, s := range sessions {
		s.goingAway()
	}
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		t.mu.Lock()
		left := len(t.conns) + len(t.closers)
		for c, st := range t.conns {
			if (st.state == http.StateIdle || st.state == http.StateNew) && now.Sub(st.since) >= idleWait {
				c.Close()
				delete(t.conns, c)
			}
		}
		t.mu.Unlock()
		if left == 0 {
			return 0
		}
		if now.After(deadline) {
			t.mu.Lock()
			defer t.mu.Unlock()
			for c := range t.conns {
				c.Close()
			}
			for s := range t.closers {
				s.cut()
			}
			return left
		}
		select {
		case <-ctx.Done():
			return left
		case <-tick.C:
		}
	}
}

func (t *tracker) addSession(s *wsSession) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	t.closers[s] = struct{}{}
	return true
}

func (t *tracker) removeSession(s *wsSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.closers, s)
}
