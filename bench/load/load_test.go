package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve accepts on a fresh 127.0.0.1 listener and runs handle for each
// connection until the test ends; it returns the URL.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}

// readRequest reads one request head from br; false at EOF or error.
func readRequest(br *bufio.Reader) bool {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" {
			return true
		}
	}
}

// answer serves keep-alive responses with the given status.
func answer(status int) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for readRequest(br) {
			body := "hi\n"
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s", status, http.StatusText(status), len(body), body)
		}
	}
}

// resetAfterRequest reads the request and aborts the connection with RST.
func resetAfterRequest(c net.Conn) {
	br := bufio.NewReader(c)
	if readRequest(br) {
		c.(*net.TCPConn).SetLinger(0)
	}
	c.Close()
}

// closeAfterRequest reads the request and closes cleanly without answering.
func closeAfterRequest(c net.Conn) {
	readRequest(bufio.NewReader(c))
	c.Close()
}

// halfAnswer sends a response head promising a body it never sends, then closes.
func halfAnswer(c net.Conn) {
	if readRequest(bufio.NewReader(c)) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
	}
	c.Close()
}

// neverAnswer reads the request and holds the connection open until the
// client gives up.
func neverAnswer(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	readRequest(br)
	io.Copy(io.Discard, br)
}

func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

func TestRunClassifiesRealServers(t *testing.T) {
	tests := []struct {
		name  string
		url   func(t *testing.T) string
		close bool
		want  Class
	}{
		{"ok", func(t *testing.T) string { return serve(t, answer(200)) }, false, ClassOK},
		{"ok close", func(t *testing.T) string { return serve(t, answer(204)) }, true, ClassOK},
		{"503", func(t *testing.T) string { return serve(t, answer(503)) }, false, ClassNon2xx},
		{"refused", refusedURL, false, ClassRefused},
		{"reset", func(t *testing.T) string { return serve(t, resetAfterRequest) }, false, ClassReset},
		{"closed without answer", func(t *testing.T) string { return serve(t, closeAfterRequest) }, true, ClassReset},
		{"truncated body", func(t *testing.T) string { return serve(t, halfAnswer) }, false, ClassReset},
		{"never answers", func(t *testing.T) string { return serve(t, neverAnswer) }, false, ClassTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 12
			rep, err := Run(context.Background(), Config{
				URL: tt.url(t), Requests: n, Connections: 3, Close: tt.close, Timeout: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			var want Counts
			for range n {
				want.add(tt.want)
			}
			if rep.Counts != want {
				t.Errorf("Run against %s server: counts %+v; want %+v (errors: %q)", tt.name, rep.Counts, want, rep.Errors)
			}
		})
	}
}

func TestOpenLoop(t *testing.T) {
	url := serve(t, answer(200))
	rep, err := Run(context.Background(), Config{URL: url, Requests: 40, Rate: 2000, Connections: 4, Close: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Mode != "open" || rep.Requests != 40 || rep.OK != 40 || rep.KeepAlive {
		t.Errorf("open loop report = mode %s, %d requests, %d ok, keep-alive %v; want open, 40, 40, false",
			rep.Mode, rep.Requests, rep.OK, rep.KeepAlive)
	}
}

// TestOpenLoopChargesStalls checks coordinated omission is accounted: with
// one request in flight at a time and a server that stalls every request,
// requests that were due while the worker was busy carry the wait in their
// latency, so the latency grows with each request instead of staying at the
// server's service time.
func TestOpenLoopChargesStalls(t *testing.T) {
	const stall = 20 * time.Millisecond
	url := serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for readRequest(br) {
			time.Sleep(stall) // the server under test is slow on purpose
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	// Due every 1ms, served one per >= 20ms: request i waits about i*19ms.
	rep, err := Run(context.Background(), Config{URL: url, Requests: 10, Rate: 1000, Connections: 1})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.OK != 10 {
		t.Fatalf("ok = %d; want 10 (errors %q)", rep.OK, rep.Errors)
	}
	// The last request was due at 9ms and cannot have finished before 10
	// stalls (200ms): its latency is at least 10*stall - 9ms.
	if min := float64((10*stall - 9*time.Millisecond).Milliseconds()); rep.Latency.MaxMs < min {
		t.Errorf("max latency = %.1fms; want >= %.0fms (latency measured from send, not from due time)", rep.Latency.MaxMs, min)
	}
}

func TestReloadCommand(t *testing.T) {
	url := serve(t, answer(200))
	dir := t.TempDir()
	count := dir + "/count"
	rep, err := Run(context.Background(), Config{
		URL: url, Duration: time.Minute, Connections: 2,
		ReloadCommand: "echo x >> " + count + "; test $(wc -l < " + count + ") -ne 2",
		Reloads:       3, ReloadInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Reloads) != 3 || rep.ReloadsFailed != 1 || rep.Reloads[1].ExitCode != 1 {
		t.Errorf("reloads = %+v, failed %d; want 3 reloads, the 2nd failing with exit 1", rep.Reloads, rep.ReloadsFailed)
	}
	if rep.Requests == 0 || rep.Failed() != 0 {
		t.Errorf("requests %d failed %d; want some, none failed", rep.Requests, rep.Failed())
	}
	// The load stops one interval after the last reload, not after a minute.
	if rep.DurationS > 30 {
		t.Errorf("run took %.1fs; want it to end soon after the last reload", rep.DurationS)
	}
}

func TestReloadFunc(t *testing.T) {
	url := serve(t, answer(200))
	calls := 0
	rep, err := Run(context.Background(), Config{
		URL: url, Duration: time.Minute, Connections: 1, Reloads: 2, ReloadInterval: time.Millisecond,
		ReloadFunc: func(context.Context) error {
			calls++
			if calls == 2 {
				return errors.New("no luck")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls != 2 || rep.ReloadsFailed != 1 || rep.Reloads[1].Err != "no luck" {
		t.Errorf("calls %d, reloads %+v; want 2 calls, the second failed with its error", calls, rep.Reloads)
	}
}

func TestReloadTimeoutKillsCommand(t *testing.T) {
	url := serve(t, answer(200))
	rep, err := Run(context.Background(), Config{
		URL: url, Duration: time.Minute, Connections: 1,
		ReloadCommand: "sleep 60", Reloads: 1, ReloadInterval: time.Millisecond, ReloadTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(rep.Reloads) != 1 || !strings.Contains(rep.Reloads[0].Err, "still running") {
		t.Errorf("reloads = %+v; want one killed for running too long", rep.Reloads)
	}
}

func TestMarksFileSplitsLatency(t *testing.T) {
	url := serve(t, answer(200))
	marks := t.TempDir() + "/marks"
	// One window covering all time from now on: every request is "during".
	if err := os.WriteFile(marks, fmt.Appendf(nil, "# test\nstart %d\n", time.Now().UnixNano()), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{URL: url, Requests: 20, Connections: 2, MarksFile: marks})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.LatencyReload.N != 20 || rep.LatencyOut.N != 0 || rep.DuringReload.OK != 20 {
		t.Errorf("during %d outside %d during-ok %d; want 20, 0, 20", rep.LatencyReload.N, rep.LatencyOut.N, rep.DuringReload.OK)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no url"},
		{Config{URL: "http://127.0.0.1:1/"}, "unbounded"},
		{Config{URL: "https://127.0.0.1:1/", Requests: 1}, "only http://"},
		{Config{URL: "http://127.0.0.1:1/", Requests: 1, Reloads: 2}, "no reload command"},
		{Config{URL: "http://127.0.0.1:1/", Requests: 1, MarksFile: "/nonexistent/marks"}, "reload marks"},
	}
	for _, tt := range tests {
		_, err := Run(context.Background(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%+v) = %v; want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		status int
		want   Class
	}{
		{nil, 200, ClassOK},
		{nil, 299, ClassOK},
		{nil, 301, ClassNon2xx},
		{nil, 503, ClassNon2xx},
		{fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), 0, ClassRefused},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), 0, ClassReset},
		{fmt.Errorf("write: %w", syscall.EPIPE), 0, ClassReset},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), 0, ClassReset},
		{io.EOF, 0, ClassReset},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), 0, ClassTimeout},
		{errors.New("malformed HTTP response"), 0, ClassOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err, tt.status); got != tt.want {
			t.Errorf("Classify(%v, %d) = %v; want %v", tt.err, tt.status, got, tt.want)
		}
	}
}

func TestParseMarks(t *testing.T) {
	tests := []struct {
		in      string
		n       int
		wantErr string
	}{
		{"", 0, ""},
		{"start 10\nstop 20\n\n# c\nstart 30\nstop 30\n", 2, ""},
		{"start 10\n", 1, ""},
		{"stop 10\n", 0, "line 1: stop without a start"},
		{"start 10\nstart 11\n", 0, "line 2: start while"},
		{"start 20\nstop 10\n", 0, "line 2: stop before its start"},
		{"begin 10\n", 0, "unknown mark"},
		{"start x\n", 0, "bad time"},
		{"start\n", 0, "want"},
	}
	for _, tt := range tests {
		got, err := ParseMarks(strings.NewReader(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMarks(%q) = %v; want error containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != tt.n {
			t.Errorf("ParseMarks(%q) = %d marks, %v; want %d, nil", tt.in, len(got), err, tt.n)
		}
	}
}

func TestOverlaps(t *testing.T) {
	ws := []window{{10, 20}, {40, 50}}
	for _, tt := range []struct {
		s    sample
		want bool
	}{
		{sample{start: 0, end: 9}, false},
		{sample{start: 0, end: 10}, true},
		{sample{start: 15, end: 16}, true},
		{sample{start: 20, end: 39}, true},
		{sample{start: 21, end: 39}, false},
		{sample{start: 45, end: 100}, true},
		{sample{start: 51, end: 100}, false},
	} {
		if got := overlaps(ws, tt.s); got != tt.want {
			t.Errorf("overlaps(%v, [%d,%d]) = %v; want %v", ws, tt.s.start, tt.s.end, got, tt.want)
		}
	}
}
