package wsrelay

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestReattachQueueIsNotTimedOut: many sessions whose backend went at once
// queue for the re-attach dials (MaxDials at a time), and the wait in that
// queue is not a wait for a backend: while a ready backend takes every
// dial, none of them gets 1012 for ReattachTimeout, however long the queue
// takes. (Seen in the h2/h3 acceptance run: 1,605 sessions of a worker
// killed at load 26, 64 dials at a time of about 1 s each; 63 sessions got
// 1012, 27 of them without a dial tried.) Here 40 sessions, one dial at a
// time, each at least 100 ms: the queue takes at least 4 s, twice the
// ReattachTimeout; before the fix the last ~half were closed.
func TestReattachQueueIsNotTimedOut(t *testing.T) {
	const clients = 40
	a := startEcho(t, "a", false)
	b := startEcho(t, "b", false)
	rt := &router{}
	rt.set(a)
	var slow atomic.Bool
	dial := func(ctx context.Context) (net.Conn, string, error) {
		if slow.Load() {
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return nil, "", err
			}
		}
		return rt.dial(ctx)
	}
	r, url := startRelay(t, Config{Dial: dial, MaxDials: 1, ReattachTimeout: 2 * time.Second}, rt)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.DialContext(ctx, url+"/ws", nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
	}
	waitFor(t, "every session on a", 10*time.Second, func() bool { return a.open() == clients })
	slow.Store(true)
	rt.set(b)
	start := time.Now()
	a.closeAll(1012) // the app restarts: every session re-attaches at once
	waitFor(t, "every session re-attached, or one closed", 30*time.Second, func() bool {
		return b.open() == clients || r.Stats().Sessions < clients
	})
	took := time.Since(start)
	st := r.Stats()
	if b.open() != clients || st.Sessions != clients {
		t.Errorf("after the queue (%v): %d sessions on b, %d open; want %d; closes %v", took.Round(time.Millisecond), b.open(), st.Sessions, clients, st.Closes)
	}
	for i, c := range conns {
		msg := fmt.Sprintf("after m%d", i)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Errorf("client %d: write after the re-attach: %v", i, err)
			continue
		}
		if _, p, err := c.ReadMessage(); err != nil || string(p) != msg {
			t.Errorf("client %d: echo after the re-attach = %q, %v; want %q", i, p, err, msg)
		}
	}
	t.Logf("%d sessions re-attached one dial at a time in %v (ReattachTimeout 2s); closes %v", clients, took.Round(time.Millisecond), st.Closes)
}
