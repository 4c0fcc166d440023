package wsrelay

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// echoBackend is a test backend: coder/websocket echoing every message, on
// a unix socket (or TCP when tcp is set).
type echoBackend struct {
	name string
	addr string
	netw string
	ln   net.Listener
	srv  *http.Server

	mu       sync.Mutex
	conns    map[*websocket.Conn]struct{}
	seen     []http.Header // handshake fields, in arrival order
	accepted atomic.Int64
	echoed   atomic.Int64
}

func startEcho(t testing.TB, name string, tcp bool) *echoBackend {
	t.Helper()
	b := &echoBackend{name: name, conns: map[*websocket.Conn]struct{}{}}
	var err error
	if tcp {
		b.netw = "tcp"
		b.ln, err = net.Listen("tcp", "127.0.0.1:0")
	} else {
		b.netw = "unix"
		b.ln, err = net.Listen("unix", filepath.Join(t.TempDir(), name+".sock"))
	}
	if err != nil {
		t.Fatal(err)
	}
	b.addr = b.ln.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	go b.srv.Serve(b.ln)
	t.Cleanup(func() { b.stop() })
	return b
}

func (b *echoBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("refuse") != "" {
		code, _ := strconv.Atoi(r.URL.Query().Get("refuse"))
		w.Header().Set("X-Refused-By", b.name)
		http.Error(w, "refused by "+b.name, code)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{"chat", "echo"}})
	if err != nil {
		return
	}
	c.SetReadLimit(64 << 20)
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.seen = append(b.seen, r.Header.Clone())
	b.mu.Unlock()
	b.accepted.Add(1)
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if string(data) == "close-4001" {
			c.Close(4001, "asked to")
			return
		}
		// Counted before the write, so a client that has its echo sees
		// the count include it.
		b.echoed.Add(1)
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// closeAll closes every session of the backend with code, as an app that
// shuts down on its own does.
func (b *echoBackend) closeAll(code websocket.StatusCode) {
	b.mu.Lock()
	list := make([]*websocket.Conn, 0, len(b.conns))
	for c := range b.conns {
		list = append(list, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close(code, "backend stopping") }()
	}
	wg.Wait()
}

func (b *echoBackend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *echoBackend) stop() {
	b.srv.Close()
	b.closeAll(websocket.StatusGoingAway)
}

// router hands the relay its ready backends in turn.
type router struct {
	mu    sync.Mutex
	ready []*echoBackend
	next  int
}

func (rt *router) set(bs ...*echoBackend) {
	rt.mu.Lock()
	rt.ready = append([]*echoBackend(nil), bs...)
	rt.mu.Unlock()
}

func (rt *router) dial(ctx context.Context) (net.Conn, string, error) {
	rt.mu.Lock()
	if len(rt.ready) == 0 {
		rt.mu.Unlock()
		return nil, "", ErrNoBackend
	}
	b := rt.ready[rt.next%len(rt.ready)]
	rt.next++
	rt.mu.Unlock()
	var d net.Dialer
	if b.netw == "unix" {
		// As zd-queue dials a unix backend (pkg/proxy's wsDial): resolved once.
		c, err := d.DialUnix(ctx, "unix", nil, &net.UnixAddr{Net: "unix", Name: b.addr})
		if err != nil {
			return nil, "", err
		}
		return c, b.name, nil
	}
	c, err := d.DialContext(ctx, b.netw, b.addr)
	return c, b.name, err
}

// startRelay serves the relay on 127.0.0.1 and returns its ws:// URL.
func startRelay(t testing.TB, cfg Config, rt *router) (*Relay, string) {
	t.Helper()
	if cfg.Dial == nil {
		cfg.Dial = rt.dial
	}
	r := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	})
	return r, "ws://" + ln.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
