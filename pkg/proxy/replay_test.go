package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/queue"
)

// replayClientEnv names the proxy address for TestReplayClientHelper, which
// runs only as TestReplayRate10k's child process.
const replayClientEnv = "ZDQ_TEST_REPLAY_CLIENT"

// TestReplayRate10k measures the replay rate: 10,000 HTTP/1.1 requests with
// mixed priorities, each on its own keep-alive connection, are sent and
// held while paused; the clock runs from Resume to the last response read
// by the client. The client is a child process (10,000 connections on each
// side would not fit one process's descriptor limit) that has every
// request written before Resume, so what is measured is the proxy's replay
// plus the backend, not the client's sending. The rate is logged, never
// asserted; every request must be answered 200 and reach the backend once.
func TestReplayRate10k(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	const n = 10000
	for _, tc := range []struct {
		backend string
		conc    int
	}{
		{"net/http", queue.DefaultReplayConcurrency},
		{"net/http", 256},
		{"minimal", queue.DefaultReplayConcurrency},
	} {
		t.Run(fmt.Sprintf("backend=%s/replay-concurrency=%d", tc.backend, tc.conc), func(t *testing.T) {
			// The previous run's 20,000 sockets and their memory are
			// still being torn down: let that finish off the clock.
			runtime.GC()
			time.Sleep(500 * time.Millisecond)
			conc := tc.conc
			dir := sockDir(t)
			var addr string
			var hits func() int64
			if tc.backend == "minimal" {
				mb := newMinimalBackend(t, dir)
				addr, hits = mb.addr, mb.hits.Load
			} else {
				be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
				addr, hits = be.addr, be.hits.Load
			}
			px := startProxy(t, Config{Backends: []string{addr}, Limits: queue.Limits{
				MaxCount: n, MaxBytes: 64 << 20, MaxAge: time.Hour, ReplayConcurrency: conc}})
			if err := px.p.Pause(""); err != nil {
				t.Fatal(err)
			}

			// Bounds for a hang, not speed limits: under -race on a busy
			// 2-core machine 10,000 connections take minutes.
			ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReplayClientHelper$", "-test.v")
			cmd.Env = append(os.Environ(), replayClientEnv+"="+px.addr, "ZDQ_TEST_REPLAY_N="+strconv.Itoa(n))
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			lines := bufio.NewScanner(out)
			next := func(prefix string) string {
				t.Helper()
				for lines.Scan() {
					if l := lines.Text(); strings.HasPrefix(l, prefix) {
						return strings.TrimPrefix(l, prefix)
					}
				}
				t.Fatalf("client helper ended without %q: %v", prefix, lines.Err())
				return ""
			}
			next("replay-client: sent")
			deadline := time.Now().Add(10 * time.Minute)
			for held(px.p) < n {
				if time.Now().After(deadline) {
					t.Fatalf("only %d of %d requests held", held(px.p), n)
				}
				time.Sleep(5 * time.Millisecond)
			}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			if err := px.p.Resume(""); err != nil {
				t.Fatal(err)
			}
			res := next("replay-client: done ")
			elapsed := time.Since(start)
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			go io.Copy(io.Discard, out)
			var ok, bad int
			if _, err := fmt.Sscanf(res, "ok=%d bad=%d", &ok, &bad); err != nil {
				t.Fatalf("client helper said %q: %v", res, err)
			}
			if ok != n || bad != 0 {
				t.Fatalf("answered 200: %d, other: %d; want %d and 0", ok, bad, n)
			}
			if got := hits(); got != n {
				t.Errorf("backend saw %d requests; want %d", got, n)
			}
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
			t.Logf("replayed %d held requests in %v: %.0f req/s from Resume to the last response read (%s backend, replay concurrency %d); proxy+backend CPU %.1f µs per request",
				n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), tc.backend, conc, float64(cpu.Microseconds())/n)
		})
	}
}

// minimalBackend answers every request on its unix socket with 200 "ok"
// and nothing else: a backend whose own cost hardly shows, so that the
// replay rate measured is the proxy's (the net/http backend costs about
// as much CPU per request as the proxy does).
type minimalBackend struct {
	addr string
	hits atomic.Int64
}

func newMinimalBackend(t *testing.T, dir string) *minimalBackend {
	t.Helper()
	path := dir + "/minimal.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mb := &minimalBackend{addr: "unix://" + path}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				mb.serve(c)
			}()
		}
	}()
	return mb
}

// serve answers bodiless requests (the replay test sends GETs) until the
// connection ends.
func (mb *minimalBackend) serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	n := 0
	for {
		k, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += k
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			mb.hits.Add(1)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"); err != nil {
				return
			}
			n = copy(buf, buf[end+4:n])
		}
		if n == len(buf) {
			return
		}
	}
}

// TestReplayClientHelper is TestReplayRate10k's client process: it opens
// one connection per request, writes every request, says "sent", reads
// every response and says "done ok=N bad=M".
func TestReplayClientHelper(t *testing.T) {
	addr := os.Getenv(replayClientEnv)
	if addr == "" {
		t.Skip("runs only as TestReplayRate10k's child process")
	}
	n, err := strconv.Atoi(os.Getenv("ZDQ_TEST_REPLAY_N"))
	if err != nil || n <= 0 {
		t.Fatalf("ZDQ_TEST_REPLAY_N: %v", err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(deadline)
		prio := (i*7)%19 - 9
		req := fmt.Sprintf("GET /r?%d HTTP/1.1\r\nHost: replay\r\nX-Priority: %d\r\nX-Seq: %d\r\n\r\n", i, prio, i)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("connection %d: write: %v", i, err)
		}
	}
	fmt.Println("replay-client: sent")
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The client is part of what is timed, on the same two
			// cores: it reads raw bytes, the way wrk does, instead of
			// parsing with net/http. A good answer is a 200 whose
			// Content-Length: 2 body "ok" ends the stream of bytes.
			var buf [1024]byte
			n := 0
			for {
				k, err := c.Read(buf[n:])
				n += k
				resp := buf[:n]
				if end := bytes.Index(resp, []byte("\r\n\r\n")); end >= 0 && n >= end+4+2 {
					head := strings.ToLower(string(resp[:end]))
					if strings.HasPrefix(head, "http/1.1 200 ") && strings.Contains(head, "\r\ncontent-length: 2") && string(resp[end+4:]) == "ok" {
						ok.Add(1)
					} else {
						bad.Add(1)
					}
					return
				}
				if err != nil || n == len(buf) {
					bad.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("replay-client: done ok=%d bad=%d\n", ok.Load(), bad.Load())
}
