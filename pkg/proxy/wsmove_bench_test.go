package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// BenchmarkMoveIdleSessionsH2: zd-queue moving n idle WebSocket sessions
// off a draining backend onto another (one op = one Drain of all n, until
// all are on the other backend), the clients RFC 8441 streams 100 to an
// HTTP/2 connection (TLS) in a child process. Over HTTP/2 the proxy holds
// n backend sockets and n/100 client ones, so 10,000 sessions fit the
// 20,000-descriptor hard limit of this machine that 10,000 HTTP/1.1 ones
// (two sockets each) do not (pkg/wsrelay's BenchmarkMoveIdleSessions stops
// at 9,980 there). The backends are two coder/websocket echo children.
// ZD_PROXY_MOVE_N sets n (default 10000).
//
// proxy-cpu-us/session: the proxy's CPU time per moved session (its h2
// server and the relay; the clients are idle). backend-cpu-us/session:
// the two echo children's. pause-p50/p99-ms-le: the upper bound of the
// wsrelay.MoveBuckets bucket the median and the 99th percentile of the
// pauses fall in (the proxy keeps a histogram, not every pause).
func BenchmarkMoveIdleSessionsH2(b *testing.B) {
	n := 10000
	if v := os.Getenv("ZD_PROXY_MOVE_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
		dir := b.TempDir()
		var socks []string
		var echoes []int
		for _, name := range []string{"a", "b"} {
			sock := filepath.Join(dir, name+".sock")
			echoes = append(echoes, startChild(b, "ZD_PROXY_CHILD=echo", "ZD_PROXY_SOCK="+sock).Process.Pid)
			socks = append(socks, "unix://"+sock)
		}
		hp := startH3ProxyB(b, strings.TrimPrefix(socks[0], "unix://"))
		if err := hp.p.SetBackends([]BackendSpec{{Addr: socks[0]}, {Addr: socks[1]}}); err != nil {
			b.Fatal(err)
		}
		// Every session opens on a; b waits, drained, for the first move.
		ctx := context.Background()
		if _, err := hp.p.Drain(ctx, socks[1], time.Second); err != nil {
			b.Fatal(err)
		}
		ca := filepath.Join(b.TempDir(), "ca.pem")
		os.WriteFile(ca, hp.caPEM, 0o600)
		startChild(b, "ZD_PROXY_CHILD=clients", "ZD_PROXY_PROTO=h2x100", "ZD_PROXY_N="+strconv.Itoa(n),
			"ZD_PROXY_TCP="+hp.tcp, "ZD_PROXY_UDP="+hp.udp, "ZD_PROXY_CA="+ca)
		ws := hp.p.ws
		waitMoves(b, "sessions open on "+socks[0], func() bool { return ws.Sessions(socks[0]) == n })
		cur, other := socks[0], socks[1]
		st0 := ws.Stats()
		cpu0, ecpu0 := rusageCPU(), echoCPU(b, echoes)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := hp.p.Resume(other); err != nil {
				b.Fatal(err)
			}
			res, err := hp.p.Drain(ctx, cur, 60*time.Second)
			if err != nil || !res.Drained {
				b.Fatalf("drain %s: %+v, %v", cur, res, err)
			}
			waitMoves(b, "sessions on "+other, func() bool { return ws.Sessions(other) == n })
			cur, other = other, cur
		}
		b.StopTimer()
		cpu, ecpu := rusageCPU()-cpu0, echoCPU(b, echoes)-ecpu0
		st := ws.Stats()
		if st.MoveFailed != st0.MoveFailed {
			b.Fatalf("%d sessions failed to move", st.MoveFailed-st0.MoveFailed)
		}
		if got := ws.Sessions(cur); got != n {
			b.Fatalf("sessions on %s after the moves: %d; want %d", cur, got, n)
		}
		moves := float64(n * b.N)
		hist := make([]uint64, len(st.MoveHistogram))
		for i := range hist {
			hist[i] = st.MoveHistogram[i] - st0.MoveHistogram[i]
		}
		b.ReportMetric(bucketAt(hist, 0.5), "pause-p50-ms-le")
		b.ReportMetric(bucketAt(hist, 0.99), "pause-p99-ms-le")
		b.ReportMetric(float64(cpu.Microseconds())/moves, "proxy-cpu-us/session")
		b.ReportMetric(float64(ecpu.Microseconds())/moves, "backend-cpu-us/session")
		b.ReportMetric(float64(n), "sessions/op")
	})
}

// bucketAt is the upper bound, in ms, of the MoveBuckets bucket that holds
// quantile q of the per-bucket counts hist (-1: over the last bound).
func bucketAt(hist []uint64, q float64) float64 {
	var total, seen uint64
	for _, c := range hist {
		total += c
	}
	for i, c := range hist {
		seen += c
		if float64(seen) >= q*float64(total) {
			if i < len(wsrelay.MoveBuckets) {
				return wsrelay.MoveBuckets[i] * 1000
			}
			return -1
		}
	}
	return -1
}

func waitMoves(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func rusageCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// echoCPU is the CPU time (user + system) of the processes pids so far.
func echoCPU(b *testing.B, pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		sum += time.Duration(ut+st) * time.Second / 100
	}
	return sum
}
