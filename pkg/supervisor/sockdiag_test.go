package supervisor

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenerFile returns a listener and the *os.File zd-run would hold for it.
func listenerFile(t *testing.T, network, addr string) (net.Listener, *os.File) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var f *os.File
	switch l := ln.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ln, f
}

// connect opens n connections to ln and waits until each is accepted; the
// accepted ends stay open until the test ends.
func connect(t *testing.T, ln net.Listener, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
	}
}

// TestCountConnections counts accepted TCP and unix connections through
// sock_diag and checks TCP against /proc/net/tcp; closed connections (in
// TIME_WAIT or gone) no longer count.
func TestCountConnections(t *testing.T) {
	tln, tf := listenerFile(t, "tcp", "127.0.0.1:0")
	uln, uf := listenerFile(t, "unix", filepath.Join(t.TempDir(), "l.sock"))
	aln, af := listenerFile(t, "unix", "@zd-test-count-"+itoa(os.Getpid()))
	ls := []Listener{{Name: "tcp", File: tf}, {Name: "unix", File: uf}, {Name: "abstract", File: af}}
	k := keysOf(ls)
	if len(k.tcpPorts) != 1 || len(k.unixNames) != 2 {
		t.Fatalf("keys = %+v; want one TCP port and two unix names", k)
	}
	if n, err := countConnections(k); err != nil || n != 0 {
		t.Fatalf("before any connection: %d, %v; want 0", n, err)
	}
	connect(t, tln, 3)
	connect(t, uln, 2)
	connect(t, aln, 4)
	n, err := countConnections(k)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3+2+4 {
		t.Errorf("countConnections = %d; want 9 (3 TCP, 2 unix, 4 abstract unix)", n)
	}
	if p := procNetCount(k.tcpPorts); p != 3 {
		t.Errorf("procNetCount = %d; want 3", p)
	}
	tcpOnly := keysOf(ls[:1])
	// A closed connection stops counting (bounded poll: the close is async).
	c, err := net.Dial("tcp", tln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := tln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := countConnections(tcpOnly); n != 4 {
		t.Errorf("with a 4th TCP connection: %d; want 4", n)
	}
	a.Close()
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _ := countConnections(tcpOnly)
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing the 4th connection: %d; want 3", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkActiveConnections compares sock_diag with /proc/net/tcp under
// whatever the machine's socket tables hold (run it under Connection: close
// load to see the difference TIME_WAIT makes).
func BenchmarkActiveConnections(b *testing.B) {
	t := &testing.T{}
	tln, tf := listenerFile(t, "tcp", "127.0.0.1:0")
	_ = tln
	k := keysOf([]Listener{{File: tf}})
	b.Run("sock_diag", func(b *testing.B) {
		for b.Loop() {
			if _, err := countConnections(k); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proc_net_tcp", func(b *testing.B) {
		for b.Loop() {
			procNetCount(k.tcpPorts)
		}
	})
}

// TestPortFilter: the kernel accepts the bytecode and sends only the
// sockets whose local port is one of the listeners' (one, two and three
// ports, so each jump of the filter is taken), not other ESTABLISHED ones.
func TestPortFilter(t *testing.T) {
	var lns []net.Listener
	var files []*os.File
	for range 3 {
		ln, f := listenerFile(t, "tcp", "127.0.0.1:0")
		lns = append(lns, ln)
		files = append(files, f)
	}
	other, _ := listenerFile(t, "tcp", "127.0.0.1:0")
	connect(t, other, 5) // 10 ESTABLISHED sockets the filter must drop
	for i, ln := range lns {
		connect(t, ln, i+1)
	}
	for n := 1; n <= 3; n++ {
		var ls []Listener
		for _, f := range files[:n] {
			ls = append(ls, Listener{File: f})
		}
		k := keysOf(ls)
		sent := 0
		if err := sockDiagDump(inetRequest(unix.AF_INET, portFilter(k.tcpPorts)), func([]byte) { sent++ }); err != nil {
			t.Fatalf("%d ports: %v", n, err)
		}
		want := n * (n + 1) / 2 // listener i has i+1 connections
		if sent != want {
			t.Errorf("%d ports: the kernel sent %d sockets; want exactly the %d accepted ones", n, sent, want)
		}
		if got, _ := countConnections(k); got != want {
			t.Errorf("%d ports: countConnections = %d; want %d", n, got, want)
		}
	}
}
