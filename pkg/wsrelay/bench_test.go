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
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Benchmarks (bench/ws-bench.sh runs them all and writes
// bench/WS-RESULTS.md; one alone: go test -run XXX -bench NAME ./pkg/wsrelay/):
// the echo backends and the clients are child processes, so what is
// measured in this process (time, CPU, memory, syscalls) is the relay's
// alone.

// child is the test binary in a child role: it prints "ready" when set up,
// then answers the lines it is sent, and ends when its stdin closes.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startChild(tb testing.TB, env ...string) *child {
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
	c := &child{cmd: cmd, in: stdin, out: bufio.NewReader(stdout)}
	if line := c.line(tb, 120*time.Second); line != "ready" {
		tb.Fatalf("child %v said %q; want ready", env, line)
	}
	return c
}

// line reads the child's next line, bounded by d.
func (c *child) line(tb testing.TB, d time.Duration) string {
	tb.Helper()
	got := make(chan string, 1)
	go func() {
		l, err := c.out.ReadString('\n')
		if err != nil {
			l = "error: " + err.Error()
		}
		got <- strings.TrimSpace(l)
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(d):
		c.cmd.Process.Kill()
		tb.Fatalf("child %s: no answer in %v", c.cmd.Env[len(c.cmd.Env)-1], d)
		return ""
	}
}

// cpu is the child's CPU time so far (user + system).
func (c *child) cpu(tb testing.TB) time.Duration { return procCPU(tb, c.cmd.Process.Pid) }

// remoteEcho starts the echo child with the named unix sockets.
func remoteEcho(tb testing.TB, names ...string) []*echoBackend {
	bs, _ := remoteEchoCmd(tb, names...)
	return bs
}

func remoteEchoCmd(tb testing.TB, names ...string) ([]*echoBackend, *exec.Cmd) {
	bs, c := remoteEchoChild(tb, names...)
	return bs, c.cmd
}

func remoteEchoChild(tb testing.TB, names ...string) ([]*echoBackend, *child) {
	return remoteEchoKind(tb, "coder", names...)
}

// remoteEchoKind starts the echo child of kind "coder" (coder/websocket
// under net/http's server) or "lean" (leanecho_test.go).
func remoteEchoKind(tb testing.TB, kind string, names ...string) ([]*echoBackend, *child) {
	dir := tb.TempDir()
	var socks []string
	var out []*echoBackend
	for _, n := range names {
		p := filepath.Join(dir, n+".sock")
		socks = append(socks, p)
		out = append(out, &echoBackend{name: n, netw: "unix", addr: p})
	}
	c := startChild(tb, "ZD_WSRELAY_CHILD=echo", "ZD_WSRELAY_ECHO="+kind, "ZD_WSRELAY_SOCKS="+strings.Join(socks, ","))
	return out, c
}

// raiseNoFile lifts this process's descriptor limit to its hard limit
// before any child starts (the children inherit it). Each relayed session
// is two sockets here: 10,000 of them need more than 20,000 descriptors.
func raiseNoFile() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

// sessionCounts: 1,000 and 10,000 sessions, or as many as the descriptor
// limit lets this process hold (two sockets a session, plus what is open
// now and a margin for the children's pipes and pidfds). The hard limit
// can be raised only with CAP_SYS_RESOURCE.
//
// ZD_WSRELAY_SESSIONS (say "1000" or "1000,5000") sets the counts instead.
func sessionCounts(b *testing.B) []int {
	if v := os.Getenv("ZD_WSRELAY_SESSIONS"); v != "" {
		var ns []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				b.Fatalf("ZD_WSRELAY_SESSIONS=%q: want counts like 1000,5000", v)
			}
			ns = append(ns, n)
		}
		return ns
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	open, _ := os.ReadDir("/proc/self/fd")
	most := (int(lim.Cur) - len(open) - 16) / 2
	if most >= 10000 {
		return []int{1000, 10000}
	}
	most = most / 10 * 10
	b.Logf("descriptor limit %d (hard %d): %d sessions at most instead of 10,000", lim.Cur, lim.Max, most)
	return []int{1000, most}
}

// idlePings keeps the relay's keepalive armed (its timer is part of what an
// idle session costs) without pinging: the idle clients never answer, and
// a run under load lasts longer than the default 30 s + 15 s.
const idlePings = time.Hour

type durations struct {
	mu sync.Mutex
	d  []time.Duration
}

func (p *durations) add(d time.Duration) { p.mu.Lock(); p.d = append(p.d, d); p.mu.Unlock() }
func (p *durations) take() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.d
	p.d = nil
	return d
}

// report adds the p50, p99 and max of d, in ms, named after what.
func report(b *testing.B, what string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	b.ReportMetric(ms(d[len(d)/2]), what+"-p50-ms")
	b.ReportMetric(ms(d[len(d)*99/100]), what+"-p99-ms")
	b.ReportMetric(ms(d[len(d)-1]), what+"-max-ms")
}

// timedConn notes how long a backend dial took, from asking for the
// connection to the first bytes of the backend's 101.
type timedConn struct {
	net.Conn
	start time.Time
	once  sync.Once
	to    *durations
}

func (c *timedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { c.to.add(time.Since(c.start)) })
	}
	return n, err
}

// BenchmarkMoveIdleSessions: time to move n idle sessions off a draining
// backend onto another (one op = one Drain of all n, until all are on the
// other backend). pause: how long each session's client→backend messages
// were held (from its barrier to the flush onto the new backend: the
// longest a client can see its messages wait); dial: the new backend's
// part of it (connect to the first bytes of its 101). relay-cpu and
// backend-cpu: CPU time of this process and of the echo backends' process
// per moved session (relay-syscalls, relay-allocs: see moveMeter). The
// backends are coder/websocket under net/http's server ("coder") or the
// lean echo of leanecho_test.go ("lean").
func BenchmarkMoveIdleSessions(b *testing.B) {
	for _, kind := range []string{"coder", "lean"} {
		for _, n := range sessionCounts(b) {
			b.Run(fmt.Sprintf("%s/n=%d", kind, n), func(b *testing.B) { benchMoves(b, kind, n) })
		}
	}
}

func benchMoves(b *testing.B, kind string, n int) {
	bs, echo := remoteEchoKind(b, kind, "a", "b")
	rt := &router{}
	rt.set(bs[0])
	var pause, dial durations
	timing := false
	cfg := Config{PingInterval: idlePings, OnMove: pause.add, Dial: func(ctx context.Context) (net.Conn, string, error) {
		start := time.Now()
		c, name, err := rt.dial(ctx)
		if err != nil || !timing {
			return c, name, err
		}
		return &timedConn{Conn: c, start: start, to: &dial}, name, nil
	}}
	r, url := startRelay(b, cfg, rt)
	startChild(b, "ZD_WSRELAY_CHILD=clients", fmt.Sprintf("ZD_WSRELAY_N=%d", n), "ZD_WSRELAY_URL="+url+"/ws")
	waitFor(b, "sessions open", 120*time.Second, func() bool { return r.Sessions(bs[0].name) == n })
	timing = true
	cur, other := bs[0], bs[1]
	var pauses, dials []time.Duration
	ecpu0 := echo.cpu(b)
	meter := startMoveMeter(b, n)
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
		pauses = append(pauses, pause.take()...)
		dials = append(dials, dial.take()...)
		cur, other = other, cur
	}
	b.StopTimer()
	meter.stop(b, n*b.N)
	ecpu := echo.cpu(b) - ecpu0
	if got := r.Sessions(cur.name); got != n {
		b.Fatalf("sessions on %s after the moves: %d; want %d", cur.name, got, n)
	}
	if st := r.Stats(); st.MoveFailed != 0 {
		b.Fatalf("%d sessions failed to move", st.MoveFailed)
	}
	report(b, "pause", pauses)
	report(b, "dial", dials)
	b.ReportMetric(float64(ecpu.Microseconds())/float64(n*b.N), "backend-cpu-us/session")
	b.ReportMetric(float64(n), "sessions/op")
}

// moveMeter measures the relay's process over the moves: CPU time, read
// and write system calls and heap allocations (the last two do not depend
// on what else the machine runs; callgrind, which counts instructions,
// aborts on this benchmark: its child processes' signals trip an assertion
// of valgrind 3.19). It also writes a CPU profile of the moves
// alone (-test.cpuprofile includes opening the sessions) to
// $ZD_WSRELAY_MOVE_PROFILE with ".n=N" appended, and with
// ZD_WSRELAY_MOVE_TIMES=1 prints on stderr the CLOCK_MONOTONIC times the
// moves started and ended at, for perf report --time (perf record -k
// CLOCK_MONOTONIC).
type moveMeter struct {
	n       int
	cpu     time.Duration
	sys     int64
	mallocs uint64
	prof    *os.File
}

func startMoveMeter(b *testing.B, n int) *moveMeter {
	m := &moveMeter{n: n}
	if path := os.Getenv("ZD_WSRELAY_MOVE_PROFILE"); path != "" {
		f, err := os.Create(fmt.Sprintf("%s.n=%d", path, n))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			b.Fatal(err)
		}
		m.prof = f
	}
	if os.Getenv("ZD_WSRELAY_MOVE_TIMES") != "" {
		fmt.Fprintf(os.Stderr, "moves n=%d start %s\n", n, monotonic())
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
	m.sys = procSyscalls(b, os.Getpid())
	m.cpu = selfCPU()
	return m
}

// stop ends the measure and reports it per moved session (moves of them).
func (m *moveMeter) stop(b *testing.B, moves int) {
	cpu, sys := selfCPU()-m.cpu, procSyscalls(b, os.Getpid())-m.sys
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs - m.mallocs
	if os.Getenv("ZD_WSRELAY_MOVE_TIMES") != "" {
		fmt.Fprintf(os.Stderr, "moves n=%d end %s\n", m.n, monotonic())
	}
	if m.prof != nil {
		pprof.StopCPUProfile()
		m.prof.Close()
	}
	per := func(x float64) float64 { return x / float64(moves) }
	b.ReportMetric(per(float64(cpu.Microseconds())), "relay-cpu-us/session")
	b.ReportMetric(per(float64(sys)), "relay-syscalls/session")
	b.ReportMetric(per(float64(mallocs)), "relay-allocs/session")
}

func monotonic() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("%d.%06d", ts.Sec, ts.Nsec/1000)
}

// BenchmarkIdleSessionMemory: heap and goroutine stacks per idle relayed
// session (both of its sockets), after a GC, with n sessions open.
func BenchmarkIdleSessionMemory(b *testing.B) {
	for _, n := range sessionCounts(b) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bs := remoteEcho(b, "a")
			rt := &router{}
			rt.set(bs[0])
			r, url := startRelay(b, Config{PingInterval: idlePings}, rt)
			heap0, stack0, g0 := memNow()
			startChild(b, "ZD_WSRELAY_CHILD=clients", fmt.Sprintf("ZD_WSRELAY_N=%d", n), "ZD_WSRELAY_URL="+url+"/ws")
			waitFor(b, "sessions open", 120*time.Second, func() bool { return r.Sessions("") == n })
			heap1, stack1, g1 := memNow()
			for b.Loop() {
			}
			heap, stack := float64(heap1-heap0)/float64(n), float64(stack1-stack0)/float64(n)
			b.ReportMetric(heap+stack, "bytes/session")
			b.ReportMetric(heap, "heap-bytes/session")
			b.ReportMetric(stack, "stack-bytes/session")
			b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/session")
		})
	}
}

func memNow() (heap, stack uint64, goroutines int) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
}

// BenchmarkRelay100B: 100-byte messages echoed over one pipelined
// connection (a gorilla client in a child process, 256 in flight),
// directly to the backend, through the relay, and through HAProxy's
// WebSocket tunnel when haproxy is installed. One op is one message and
// its echo. proxy-cpu-us/msg is the CPU time of the proxy's process per
// message (this process for the relay), relay-syscalls/msg the relay's
// read and write system calls per message. ZD_WSRELAY_ORDER (say "haproxy,relay,direct") sets the
// order of the three, so rounds can take turns.
func BenchmarkRelay100B(b *testing.B) {
	bs := remoteEcho(b, "a")
	rt := &router{}
	rt.set(bs[0])
	_, url := startRelay(b, Config{}, rt)
	order := []string{"direct", "relay", "haproxy"}
	if o := os.Getenv("ZD_WSRELAY_ORDER"); o != "" {
		order = strings.Split(o, ",")
	}
	for _, name := range order {
		switch name {
		case "direct":
			b.Run("direct", func(b *testing.B) {
				pump(b, startChild(b, "ZD_WSRELAY_CHILD=pump", "ZD_WSRELAY_UNIX="+bs[0].addr), 0)
			})
		case "relay":
			b.Run("relay", func(b *testing.B) {
				pump(b, startChild(b, "ZD_WSRELAY_CHILD=pump", "ZD_WSRELAY_URL="+url+"/ws"), os.Getpid())
			})
		case "haproxy":
			b.Run("haproxy", func(b *testing.B) {
				addr, pid := startHAProxy(b, bs[0].addr)
				pump(b, startChild(b, "ZD_WSRELAY_CHILD=pump", "ZD_WSRELAY_URL=ws://"+addr+"/ws"), pid)
			})
		}
	}
}

// pump has the pump child echo b.N messages and reports the proxy's
// (process proxy, 0 for none) CPU time and system calls per message.
func pump(b *testing.B, c *child, proxy int) {
	b.SetBytes(100)
	var cpu0 time.Duration
	var sys0 int64
	if proxy != 0 {
		cpu0, sys0 = procCPU(b, proxy), procSyscalls(b, proxy)
	}
	b.ResetTimer()
	fmt.Fprintf(c.in, "%d\n", b.N)
	if l := c.line(b, 10*time.Minute); l != "done" {
		b.Fatalf("pump: %s", l)
	}
	b.StopTimer()
	if proxy != 0 {
		b.ReportMetric(float64((procCPU(b, proxy)-cpu0).Nanoseconds())/1000/float64(b.N), "proxy-cpu-us/msg")
	}
	if proxy == os.Getpid() {
		// HAProxy's recv/send are not in /proc's syscr/syscw; the relay's
		// read/write are.
		b.ReportMetric(float64(procSyscalls(b, proxy)-sys0)/float64(b.N), "relay-syscalls/msg")
	}
}

// procCPU is process pid's CPU time (user + system) from /proc.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command (which may hold spaces): state is field 3,
	// utime 14 and stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func selfCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procSyscalls is how many read and write system calls process pid made.
func procSyscalls(tb testing.TB, pid int) int64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, l := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == "syscr" || k == "syscw" {
			x, _ := strconv.ParseInt(v, 10, 64)
			n += x
		}
	}
	return n
}

// startHAProxy runs haproxy in front of the backend socket and returns its
// address and pid.
func startHAProxy(b *testing.B, backendSock string) (string, int) {
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
	return addr, cmd.Process.Pid
}
