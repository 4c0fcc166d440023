package fdpass

import (
	"context"
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// The test binary doubles as the receiving process of the benchmark.
func TestMain(m *testing.M) {
	if os.Getenv("FDPASS_BENCH_CHILD") == "1" {
		os.Exit(benchChild())
	}
	goleak.VerifyTestMain(m)
}

// benchChild receives handoffs on fd 3 until EOF, closing what it gets and
// acknowledging each with one byte.
func benchChild() int {
	f := os.NewFile(3, "conn")
	nc, err := net.FileConn(f)
	if err != nil {
		return 2
	}
	f.Close()
	c := nc.(*net.UnixConn)
	for {
		fds, err := Recv(context.Background(), c, 1<<16)
		if err != nil {
			return 0 // EOF: the benchmark is over
		}
		CloseAll(fds)
		if _, err := c.Write([]byte{1}); err != nil {
			return 3
		}
	}
}
