package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
)

// rawExchange writes req on a fresh connection and returns the status line
// the proxy answered with ("" if it closed without one).
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestBadInputIsRefusedAndCounted(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	// 1s: whole requests must beat it even when the machine is busy.
	px := startProxy(t, Config{Backends: []string{be.addr}, MaxHeaderBytes: 4096, ReadHeaderTimeout: time.Second})
	c := client(t)
	ok := func() {
		t.Helper()
		if r, body := get(t, c, px.url+"/ok"); r.StatusCode != 200 || body != "backend a\n" {
			t.Fatalf("a good request after bad input: %d %q", r.StatusCode, body)
		}
	}
	cases := []struct {
		name, req, want string
	}{
		{"garbage request line", "GARBAGE\r\n\r\n", ""}, // not HTTP/1.x: closed, no answer
		{"bad version", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"space in header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", "HTTP/1.1 400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"two content lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "HTTP/1.1 400"},
		{"huge header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", "HTTP/1.1 431"},
		{"binary noise", "\x00\x01\x02\xff\xfe\r\n\r\n", ""},
	}
	for _, tc := range cases {
		if got := rawExchange(t, px.addr, tc.req); !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
			t.Errorf("%s: answered %q; want %s", tc.name, got, tc.want)
		}
		ok()
	}
	if v := metricValue(t, px.p, `zdqueue_bad_input_total{kind="malformed"}`); v < 4 {
		t.Errorf("malformed = %v; want ≥ 4", v)
	}
	if v := metricValue(t, px.p, `zdqueue_bad_input_total{kind="header_too_large"}`); v != 1 {
		t.Errorf("header_too_large = %v; want 1", v)
	}

	// Slowloris: headers trickle in and never finish. The connection is
	// closed once the header timeout passes, without an answer.
	sl, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	io.WriteString(sl, "GET / HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	sl.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 150; i++ { // 3s of trickle, past the 1s header timeout
		if _, err := io.WriteString(sl, "X-A: b\r\n"); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the attacker's pace, not synchronisation
	}
	if _, err := sl.Read(make([]byte, 1)); err == nil {
		t.Errorf("slowloris connection got an answer")
	}
	if d := time.Since(start); d > 8*time.Second { // unbounded it would be the 10s read deadline
		t.Errorf("slowloris connection held for %v", d)
	}
	waitFor(t, "the timeout counted", func() bool {
		return metricValue(t, px.p, `zdqueue_bad_input_total{kind="timeout"}`) >= 1
	})
	ok()
	if v := metricValue(t, px.p, `zdqueue_panics_total`); v != 0 {
		t.Errorf("panics = %v; want 0", v)
	}
	if be.hits.Load() != int64(len(cases)+1) {
		t.Errorf("backend saw %d requests; want only the %d good ones", be.hits.Load(), len(cases)+1)
	}
}

func TestGarbageOnAdminAndControl(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	adminDone := make(chan error, 1)
	go func() { adminDone <- px.p.ServeAdmin(ctx, ln) }()
	sockPath := filepath.Join(dir, "queue.sock")
	srv, err := control.Listen(sockPath, control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- srv.Serve(ctx, px.p.Handle) }()
	defer func() {
		cancel()
		<-adminDone
		srv.Close()
		<-ctlDone
	}()

	noise := make([]byte, 4096)
	rand.Read(noise)
	for _, payload := range [][]byte{noise, []byte("GET /_zero-downtime/status HTTP/1.1\r\nHost: \x00\r\n\r\n"), []byte("\xff\xff\xff\xff")} {
		if got := rawExchange(t, ln.Addr().String(), string(payload)); got != "" && !strings.HasPrefix(got, "HTTP/1.1 4") {
			t.Errorf("admin answered garbage with %q", got)
		}
		uc, err := net.Dial("unix", sockPath)
		if err != nil {
			t.Fatal(err)
		}
		uc.SetDeadline(time.Now().Add(5 * time.Second))
		uc.Write(payload)
		io.Copy(io.Discard, uc) // the server replies with an error or hangs up
		uc.Close()
	}
	// Unknown op and bad args get protocol errors, not a crash.
	if err := control.Call(ctx, sockPath, "frobnicate", nil, nil); control.CodeOf(err) != control.CodeUnknownOp {
		t.Errorf("unknown op: %v", err)
	}
	if err := control.Call(ctx, sockPath, queueapi.OpDrain, map[string]any{"backend": 42}, nil); control.CodeOf(err) != control.CodeBadRequest {
		t.Errorf("drain with a bad backend: %v", err)
	}
	if err := control.Call(ctx, sockPath, queueapi.OpPause, map[string]any{"backend": "unix:///nope.sock"}, nil); control.CodeOf(err) != control.CodeNotFound {
		t.Errorf("pause of an unknown backend: %v", err)
	}
	var st queueapi.Status
	if err := control.Call(ctx, sockPath, queueapi.OpStatus, nil, &st); err != nil || st.WorkerStats.Ready != 1 {
		t.Errorf("status after garbage: %+v, %v", st.WorkerStats, err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/_zero-downtime/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("admin status after garbage: %d", resp.StatusCode)
	}
	var res queueapi.DrainResult
	if err := control.Call(ctx, sockPath, queueapi.OpDrain, queueapi.DrainArgs{Backend: be.addr, TimeoutMS: 1000}, &res); err != nil || !res.Drained {
		t.Errorf("drain over the socket: %+v, %v", res, err)
	}
	if err := control.Call(ctx, sockPath, queueapi.OpResume, queueapi.BackendArgs{Backend: be.addr}, nil); err != nil {
		t.Errorf("resume over the socket: %v", err)
	}
	events := 0
	err = control.CallStream(ctx, sockPath, queueapi.OpWatch, queueapi.WatchArgs{IntervalMS: 50, Count: 2}, func(raw msgpack.RawMessage) error {
		var ev queueapi.Status
		if err := msgpack.Unmarshal(raw, &ev); err != nil {
			return err
		}
		if ev.Health == "" {
			t.Errorf("watch event without health: %+v", ev)
		}
		events++
		return nil
	}, nil)
	if err != nil || events != 2 {
		t.Errorf("watch: %d events, %v; want 2", events, err)
	}
	var sr queueapi.SelfTestResult
	if err := control.Call(ctx, sockPath, queueapi.OpSelfTest, nil, &sr); err != nil || !sr.OK {
		t.Errorf("self-test: %+v, %v", sr, err)
	}
}

func TestWebSocketUpgradeTunnel(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+px.addr+"/ws", &websocket.DialOptions{HTTPClient: client(t)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		msg := strings.Repeat("m", i*1000+1)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil || string(b) != msg {
			t.Fatalf("echo %d: %d bytes, %v", i, len(b), err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}
