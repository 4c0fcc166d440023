package testscripts

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The example app's WebSocket echo under zd-run: messages come back; a
// reload ends the session on the old worker with 1012 (service restart), so
// the client knows to reconnect, and a new session lands on the new
// generation.
func TestRunExampleWebSocket(t *testing.T) {
	r := startZdRun(t, "--workers", "1", "--", "zd-echo")
	r.waitHealthy()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", r.sock)
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://zd/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	for _, msg := range []string{"hello", "zero downtime"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %q = %q, %v", msg, got, err)
		}
	}
	reloaded := make(chan error, 1)
	go func() {
		_, stderr, code := r.zdctl("reload")
		if code != 0 {
			reloaded <- errors.New(stderr)
			return
		}
		reloaded <- nil
	}()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Errorf("read during reload: %v; want close 1012 (service restart)", err)
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	c2, _, err := websocket.Dial(ctx, "ws://zd/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("redial after the reload: %v", err)
	}
	defer c2.CloseNow()
	if err := c2.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c2.Read(ctx); err != nil || len(got) != 3 {
		t.Fatalf("echo on the new generation = %v, %v", got, err)
	}
	c2.Close(websocket.StatusNormalClosure, "")
}
