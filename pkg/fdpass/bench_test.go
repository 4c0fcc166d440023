package fdpass

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkHandoff passes n listening TCP sockets to another process (a
// re-executed test binary) in one handoff and waits for its
// acknowledgement; ns/fd is the cost per descriptor end to end.
func BenchmarkHandoff(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) { benchHandoff(b, n) })
	}
}

func benchHandoff(b *testing.B, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < uint64(n+200) {
		b.Skipf("open-files limit %d is too low for %d fds", lim.Cur, n)
	}
	fds := make([]FD, n)
	for i := range fds {
		f, addr := listener(b)
		fds[i] = FD{Name: "l", Family: "inet", Type: "stream", Local: addr, File: f}
	}
	defer CloseAll(fds)

	a, peer := pair(b)
	defer a.Close()
	pf, err := peer.File()
	peer.Close()
	if err != nil {
		b.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "FDPASS_BENCH_CHILD=1")
	cmd.ExtraFiles = []*os.File{pf}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	pf.Close()
	defer cmd.Wait()
	defer a.CloseWrite()

	ack := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := Send(ctx, a, fds); err != nil {
			cancel()
			b.Fatal(err)
		}
		if _, err := io.ReadFull(a, ack); err != nil {
			cancel()
			b.Fatal(err)
		}
		cancel()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fd")
}
