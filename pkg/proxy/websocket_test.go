package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestWebSocketSessionsSurviveDrain: sessions through zd-queue keep going
// while their backends are drained in turn (Proxy.Drain, the queue.sock
// drain op), every echo checked; each backend attempt carries the same
// Zd-Session-Id and a growing Zd-Resume.
func TestWebSocketSessionsSurviveDrain(t *testing.T) {
	const clients, msgs, drains = 8, 200, 6
	dir := sockDir(t)
	var mu sync.Mutex
	resumes := map[string][]int{} // session id -> Zd-Resume values seen
	echo := func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		n, _ := strconv.Atoi(r.Header.Get("Zd-Resume"))
		mu.Lock()
		id := r.Header.Get("Zd-Session-Id")
		resumes[id] = append(resumes[id], n)
		mu.Unlock()
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, b); err != nil {
				return
			}
		}
	}
	a := newTestBackend(t, dir, "a", echo)
	b := newTestBackend(t, dir, "b", echo)
	px := startProxy(t, Config{Backends: []string{a.addr, b.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var progress sync.WaitGroup
	progress.Add(clients)
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			errs <- func() error {
				c, _, err := websocket.Dial(ctx, "ws://"+px.addr+"/ws", &websocket.DialOptions{HTTPClient: client(t)})
				if err != nil {
					progress.Done()
					return fmt.Errorf("client %d: dial: %v", i, err)
				}
				defer c.CloseNow()
				for m := 0; m < msgs; m++ {
					if m == 10 {
						progress.Done()
					}
					want := fmt.Sprintf("%d:%d", i, m)
					if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
						return fmt.Errorf("client %d: write %d: %v", i, m, err)
					}
					_, got, err := c.Read(ctx)
					if err != nil || string(got) != want {
						return fmt.Errorf("client %d: echo %d = %q, %v; want %q", i, m, got, err, want)
					}
					if m%20 == 0 {
						time.Sleep(time.Millisecond) // let the drains land mid-stream
					}
				}
				return c.Close(websocket.StatusNormalClosure, "")
			}()
		}()
	}
	progress.Wait()
	st := px.p.Status()
	attached, attachedH1 := 0, 0
	for _, b := range st.Backends {
		attached += b.WSSessions
		attachedH1 += b.WSProtocols["h1"]
	}
	if st.WebSocket.Sessions != clients || attached != clients {
		t.Errorf("Status: websocket.sessions %d, ws_sessions over the backends %d; want %d", st.WebSocket.Sessions, attached, clients)
	}
	if st.WebSocket.Protocols["h1"] != clients || attachedH1 != clients {
		t.Errorf("Status: websocket.protocols %v, ws_protocols h1 over the backends %d; want h1 %d", st.WebSocket.Protocols, attachedH1, clients)
	}
	for d := 0; d < drains; d++ {
		from, to := a, b
		if d%2 == 1 {
			from, to = b, a
		}
		if err := px.p.Resume(to.addr); err != nil {
			t.Fatal(err)
		}
		res, err := px.p.Drain(ctx, from.addr, 10*time.Second)
		if err != nil || !res.Drained {
			t.Fatalf("drain %s: %+v, %v", from.addr, res, err)
		}
		if n := px.p.ws.Sessions(from.addr); n != 0 {
			t.Fatalf("after draining %s: %d sessions still on it", from.addr, n)
		}
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(resumes) != clients {
		t.Errorf("backends saw %d session ids; want %d", len(resumes), clients)
	}
	for id, rs := range resumes {
		for i, n := range rs {
			if n != i {
				t.Errorf("session %s: Zd-Resume values %v; want 0, 1, 2, ...", id, rs)
				break
			}
		}
	}
	ws := px.p.ws.Stats()
	t.Logf("moved %d sessions, failed %d, closes %v", ws.Moved, ws.MoveFailed, ws.Closes)
}

func TestSetForwarded(t *testing.T) {
	for _, tc := range []struct {
		name        string
		remote, via string // RemoteAddr; "tls", "h3" or "" for plain
		prior       []string
		want        [3]string // X-Forwarded-For, -Proto, -Host
	}{
		{"plain", "192.0.2.1:5000", "", nil, [3]string{"192.0.2.1", "http", "example.test"}},
		{"appended", "192.0.2.1:5000", "", []string{"10.0.0.1", "10.0.0.2"}, [3]string{"10.0.0.1, 10.0.0.2, 192.0.2.1", "http", "example.test"}},
		{"v6 over tls", "[2001:db8::1]:443", "tls", nil, [3]string{"2001:db8::1", "https", "example.test"}},
		{"h3", "192.0.2.1:5000", "h3", nil, [3]string{"192.0.2.1", "https", "example.test"}},
		{"unix client", "@", "", []string{"10.0.0.1"}, [3]string{"10.0.0.1", "http", "example.test"}},
	} {
		r, _ := http.NewRequest("GET", "http://example.test/ws", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-Proto", "gopher")
		for _, v := range tc.prior {
			r.Header.Add("X-Forwarded-For", v)
		}
		switch tc.via {
		case "tls":
			r.TLS = &tls.ConnectionState{}
		case "h3":
			r.ProtoMajor = 3
		}
		setForwarded(r)
		got := [3]string{strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host")}
		if got != tc.want {
			t.Errorf("%s: setForwarded gave %q; want %q", tc.name, got, tc.want)
		}
	}
}

// TestWebSocketKeepalive: zd-queue's own pings (WSPingInterval,
// WSPongTimeout) end the session of a client that answers none, counted
// 1006 ping-timeout in /metrics, while a client that reads (coder/websocket
// answers pings as it reads) keeps its session.
func TestWebSocketKeepalive(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil || c.Write(context.Background(), typ, b) != nil {
				return
			}
		}
	})
	px := startProxy(t, Config{Backends: []string{a.addr}, WSPingInterval: 100 * time.Millisecond, WSPongTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	silent, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	fmt.Fprintf(silent, "GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(silent), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("silent client's handshake: %v, %v; want 101", resp, err)
	}

	live, _, err := websocket.Dial(ctx, "ws://"+px.addr+"/ws", &websocket.DialOptions{HTTPClient: client(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer live.CloseNow()
	reading := make(chan error, 1)
	go func() { _, _, err := live.Read(ctx); reading <- err }() // answers pings meanwhile

	series := `zdqueue_ws_closes_total{code="1006",reason="ping-timeout"}`
	waitFor(t, series+" to be 1 in /metrics", func() bool { return metricValue(t, px.p, series) == 1 })
	// The close is counted before the session is let go.
	waitFor(t, "one session open (the client that reads)", func() bool { return px.p.ws.Sessions("") == 1 })
	select {
	case err := <-reading:
		t.Fatalf("the client that reads lost its session: %v", err)
	default:
	}
}
