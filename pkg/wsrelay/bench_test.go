package wsrelay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Benchmarks (run: go test -run XXX -bench . -benchtime 3x ./pkg/wsrelay/):
// the echo backends and the clients are child processes, so the numbers
// measured in this process are the relay's alone.

// startChild runs the test binary in a child role and waits for "ready".
func startChild(tb testing.TB, env ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=XXX")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatalf("child %v: %v", env, err)
		}
	case <-time.After(120 * time.Second):
		tb.Fatalf("child %v not ready in 120s", env)
	}
	return cmd
}

// remoteEcho starts the echo child with the named unix sockets.
func remoteEcho(tb testing.TB, names ...string) []*echoBackend {
	bs, _ := remoteEchoCmd(tb, names...)
	return bs
}

func remoteEchoCmd(tb testing.TB, names ...string) ([]*echoBackend, *exec.Cmd) {
	dir := tb.TempDir()
	var socks []string
	var out []*echoBackend
	for _, n := range names {
		p := filepath.Join(dir, n+".sock")
		socks = append(socks, p)
		out = append(out, &echoBackend{name: n, netw: "unix", addr: p})
	}
	cmd := startChild(tb, "ZD_WSRELAY_CHILD=echo", "ZD_WSRELAY_SOCKS="+strings.Join(socks, ","))
	return out, cmd
}

// sessionCounts: 1,000 and 10,000 sessions, or as many as the descriptor
// limit allows (each session is two sockets in this process; the limit
// cannot be raised without CAP_SYS_RESOURCE).
func sessionCounts(b *testing.B) []int {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	most := int(lim.Cur)/2 - 500
	if most >= 10000 {
		return []int{1000, 10000}
	}
	b.Logf("descriptor limit %d: %d sessions at most instead of 10,000", lim.Cur, most/1000*1000)
	return []int{1000, most / 1000 * 1000}
}

type pauses struct {
	mu sync.Mutex
	d  []time.Duration
}

func (p *pauses) add(d time.Duration) { p.mu.Lock(); p.d = append(p.d, d); p.mu.Unlock() }
func (p *pauses) take() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.d
	p.d = nil
	return d
}

// BenchmarkMoveIdleSessions: time to move n idle sessions off a draining
// backend onto another (one op = one Drain of all n), and the p99 of the
// per-session pause (hold to flush, dial queueing included).
func BenchmarkMoveIdleSessions(b *testing.B) {
	for _, n := range sessionCounts(b) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bs := remoteEcho(b, "a", "b")
			rt := &router{}
			rt.set(bs[0])
			var ps pauses
			r, url := startRelay(b, Config{OnMove: ps.add}, rt)
			startChild(b, "ZD_WSRELAY_CHILD=clients", fmt.Sprintf("ZD_WSRELAY_N=%d", n), "ZD_WSRELAY_URL="+url+"/ws")
			waitFor(b, "sessions open", 60*time.Second, func() bool { return r.Sessions(bs[0].name) == n })
			cur, other := bs[0], bs[1]
			var all []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rt.set(other)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				if err := r.Drain(ctx, cur.name); err != nil {
					b.Fatal(err)
				}
				cancel()
				// Drain returns once the sessions left cur; wait for them
				// on the other backend too, so the op is the whole move.
				waitFor(b, "sessions on the new backend", 60*time.Second, func() bool { return r.Sessions(other.name) == n })
				all = append(all, ps.take()...)
				cur, other = other, cur
			}
			b.StopTimer()
			if got := r.Sessions(cur.name); got != n {
				b.Fatalf("sessions on %s after the moves: %d; want %d", cur.name, got, n)
			}
			st := r.Stats()
			if st.MoveFailed != 0 {
				b.Fatalf("%d sessions failed to move", st.MoveFailed)
			}
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "pause-p99-ms")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "pause-p50-ms")
			}
			b.ReportMetric(float64(n), "sessions/op")
		})
	}
}

// BenchmarkIdleSessionMemory: heap and stacks per idle relayed session
// (both of its sockets), after a GC.
func BenchmarkIdleSessionMemory(b *testing.B) {
	for _, n := range sessionCounts(b) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bs := remoteEcho(b, "a")
			rt := &router{}
			rt.set(bs[0])
			r, url := startRelay(b, Config{}, rt)
			before := memNow()
			startChild(b, "ZD_WSRELAY_CHILD=clients", fmt.Sprintf("ZD_WSRELAY_N=%d", n), "ZD_WSRELAY_URL="+url+"/ws")
			waitFor(b, "sessions open", 60*time.Second, func() bool { return r.Sessions("") == n })
			after := memNow()
			for b.Loop() {
			}
			b.ReportMetric(float64(after-before)/float64(n), "bytes/session")
		})
	}
}

func memNow() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkRelay100B: 100-byte messages echoed over one pipelined
// connection (gorilla client, 256 in flight), directly to the backend,
// through the relay, and through HAProxy's WebSocket tunnel when haproxy
// is installed. One op is one message and its echo.
func BenchmarkRelay100B(b *testing.B) {
	bs := remoteEcho(b, "a")
	rt := &router{}
	rt.set(bs[0])
	_, url := startRelay(b, Config{}, rt)
	b.Run("direct", func(b *testing.B) {
		d := websocket.Dialer{NetDial: func(string, string) (net.Conn, error) { return net.Dial("unix", bs[0].addr) }}
		echo100(b, d, "ws://backend/ws")
	})
	b.Run("relay", func(b *testing.B) { echo100(b, websocket.Dialer{}, url+"/ws") })
	b.Run("haproxy", func(b *testing.B) {
		addr := startHAProxy(b, bs[0].addr)
		echo100(b, websocket.Dialer{}, "ws://"+addr+"/ws")
	})
}

func echo100(b *testing.B, d websocket.Dialer, url string) {
	c, _, err := d.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := []byte(strings.Repeat("x", 100))
	window := make(chan struct{}, 256)
	errc := make(chan error, 1)
	b.SetBytes(100)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			window <- struct{}{}
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
		<-window
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func startHAProxy(b *testing.B, backendSock string) string {
	path, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(b.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend fe
  bind %s
  default_backend be
backend be
  server s1 unix@%s
`, addr, backendSock)), 0o600)
	cmd := exec.Command(path, "-db", "-f", cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(b, "haproxy listening", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}
