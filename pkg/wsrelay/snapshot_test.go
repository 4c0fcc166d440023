package wsrelay

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestEachSession: EachSession reports each session's handshake, what was
// negotiated, its backend, state and counters both ways; a session
// between backends shows as moving with the client's frames it holds.
func TestEachSession(t *testing.T) {
	a := startEcho(t, "a", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{}, rt)

	before := time.Now()
	d := websocket.Dialer{EnableCompression: true, Subprotocols: []string{"chat"}}
	hdr := http.Header{"Cookie": {"s=1"}, "X-App": {"one"}}
	c1, _, err := d.Dial(url+"/ws?room=1", hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, _, err := websocket.DefaultDialer.Dial(url+"/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	msgs := []string{"one", "two two", strings.Repeat("x", 300)}
	total := 0
	for _, m := range msgs {
		total += len(m)
		if err := c1.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		c1.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, got, err := c1.ReadMessage(); err != nil || string(got) != m {
			t.Fatalf("echo of %q = %q, %v", m, got, err)
		}
	}
	waitFor(t, "2 sessions", 10*time.Second, func() bool { return r.Sessions("a") == 2 })

	infos := map[string]SessionInfo{}
	if n := r.EachSession(func(s *SessionInfo) bool { infos[s.Target] = *s; return true }); n != 2 {
		t.Fatalf("EachSession called fn %d times; want 2", n)
	}
	s1, ok := infos["/ws?room=1"]
	if !ok {
		t.Fatalf("EachSession: no session of /ws?room=1 in %v", infos)
	}
	if s1.ID == "" || s1.Transport != "h1" || s1.Backend != "a" || s1.State != SessionAttached || s1.Subprotocol != "chat" {
		t.Errorf("session 1 = id %q transport %q backend %q state %q subprotocol %q; want an id, h1, a, attached, chat",
			s1.ID, s1.Transport, s1.Backend, s1.State, s1.Subprotocol)
	}
	if len(s1.Extensions) != 1 || !strings.HasPrefix(s1.Extensions[0], "permessage-deflate") {
		t.Errorf("session 1 Extensions = %q; want the permessage-deflate answer", s1.Extensions)
	}
	if want := c1.LocalAddr().String(); s1.Remote != want {
		t.Errorf("session 1 Remote = %q; want the client's address %q", s1.Remote, want)
	}
	if s1.Header.Get("Cookie") != "s=1" || s1.Header.Get("X-App") != "one" {
		t.Errorf("session 1 Header = %v; want Cookie s=1 and X-App one", s1.Header)
	}
	if s1.MsgsFromClient != 3 || s1.MsgsToClient != 3 || s1.BytesFromClient != uint64(total) || s1.BytesToClient != uint64(total) {
		t.Errorf("session 1 counters = %d/%d messages, %d/%d bytes; want 3/3, %d/%d",
			s1.MsgsFromClient, s1.MsgsToClient, s1.BytesFromClient, s1.BytesToClient, total, total)
	}
	if s1.Opened.Before(before) || s1.LastActive.Before(s1.Opened) || time.Since(s1.LastActive) > time.Minute {
		t.Errorf("session 1 opened %v, last active %v; want both after %v, in order", s1.Opened, s1.LastActive, before)
	}
	s2 := infos["/plain"]
	if s2.Extensions != nil || s2.MsgsFromClient != 0 || !s2.LastActive.Equal(s2.Opened) {
		t.Errorf("session 2 = extensions %q, %d messages, last active %v (opened %v); want none, 0, its opening",
			s2.Extensions, s2.MsgsFromClient, s2.LastActive, s2.Opened)
	}
	if n := r.EachSession(func(*SessionInfo) bool { return false }); n != 1 {
		t.Errorf("EachSession with fn returning false called it %d times; want 1", n)
	}

	// No backend: draining a leaves both sessions between backends, and
	// what the client sends meanwhile is held.
	rt.set()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Drain(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c1.WriteMessage(websocket.BinaryMessage, []byte("held-while-moving")); err != nil {
		t.Fatal(err)
	}
	var moving SessionInfo
	waitFor(t, "session 1 moving with a held frame", 10*time.Second, func() bool {
		r.EachSession(func(s *SessionInfo) bool {
			if s.ID == s1.ID {
				moving = *s
			}
			return true
		})
		return moving.State == SessionMoving && len(moving.Held) > 0
	})
	if moving.Backend != "" || moving.MsgsFromClient != 4 {
		t.Errorf("moving session: backend %q, %d messages from the client; want \"\" and 4", moving.Backend, moving.MsgsFromClient)
	}
	// The frame as the next backend gets it: binary, final, masked.
	if want := 2 + 4 + len("held-while-moving"); len(moving.Held) != want || moving.Held[0] != 0x82 || moving.Held[1]&0x80 == 0 {
		t.Errorf("moving session holds % x; want one masked binary frame of %d bytes", moving.Held, want)
	}
	b := startEcho(t, "b", false)
	rt.set(b)
	var back SessionInfo
	waitFor(t, "session 1 on b", 20*time.Second, func() bool {
		r.EachSession(func(s *SessionInfo) bool {
			if s.ID == s1.ID {
				back = *s
			}
			return true
		})
		return back.Backend == "b"
	})
	if back.State != SessionAttached || back.Moves != 1 || back.Held != nil {
		t.Errorf("after the move: state %q, %d moves, held %q; want attached, 1, nothing", back.State, back.Moves, back.Held)
	}
	c1.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, got, err := c1.ReadMessage(); err != nil || string(got) != "held-while-moving" {
		t.Fatalf("echo of the held message = %q, %v", got, err)
	}
}
