package supervisor

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	// Another service on the same port at another address (::1 beside
	// 127.0.0.1, as another test of the machine may bind): its
	// connections are not the listeners'. (A CI run counted 23 for 3.)
	port := tln.Addr().(*net.TCPAddr).Port
	if other, err := net.Listen("tcp6", "[::1]:"+itoa(port)); err != nil {
		t.Logf("no [::1]:%d listener beside 127.0.0.1 (%v): the other-address case is not checked", port, err)
	} else {
		t.Cleanup(func() { other.Close() })
		connect(t, other, 2)
	}
	n, err := countConnections(k)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3+2+4 {
		t.Errorf("countConnections = %d; want 9 (3 TCP, 2 unix, 4 abstract unix)", n)
	}
	if p := procNetCount(k); p != 3 {
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
			procNetCount(k)
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

// nlmsg builds one netlink message of type typ around payload.
func nlmsg(typ uint16, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(16+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// unixMsg builds a unix_diag_msg of socket type typ with a UNIX_DIAG_NAME.
func unixMsg(typ uint8, name string) []byte {
	b := make([]byte, sizeofUnixDiagMsg)
	b[0], b[1], b[2] = unix.AF_UNIX, typ, tcpEstablished
	attr := binary.NativeEndian.AppendUint16(nil, uint16(4+len(name)))
	attr = binary.NativeEndian.AppendUint16(attr, unixDiagName)
	return append(append(b, attr...), name...)
}

// FuzzWalkNetlink: any datagram is walked without a panic, the payloads
// handed out lie inside it, and a walk that is not done consumed only
// whole messages.
func FuzzWalkNetlink(f *testing.F) {
	f.Add(append(nlmsg(unix.SOCK_DIAG_BY_FAMILY, make([]byte, sizeofInetDiagMsg)), nlmsg(unix.NLMSG_DONE, []byte{0, 0, 0, 0})...))
	f.Add(nlmsg(unix.NLMSG_ERROR, []byte{0xea, 0xff, 0xff, 0xff}))
	f.Add([]byte{3, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		done, err := walkNetlink(b, func(p []byte) {
			total += len(p)
			if len(p) > len(b) {
				t.Fatalf("payload of %d bytes from a %d-byte datagram", len(p), len(b))
			}
		})
		if err != nil && !done {
			t.Errorf("error %v without done", err)
		}
		if total > len(b) {
			t.Errorf("payloads total %d bytes from a %d-byte datagram", total, len(b))
		}
	})
}

// FuzzUnixDiagName: any unix_diag_msg decodes without a panic; a path name
// never keeps a NUL, datagram sockets never have a name here.
func FuzzUnixDiagName(f *testing.F) {
	f.Add(unixMsg(unix.SOCK_STREAM, "/run/zd/app.sock\x00"))
	f.Add(unixMsg(unix.SOCK_STREAM, "\x00zd-abstract"))
	f.Add(unixMsg(unix.SOCK_DGRAM, "/run/x\x00"))
	f.Add(unixMsg(unix.SOCK_SEQPACKET, ""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, ok := unixDiagStreamName(msg)
		if !ok {
			return
		}
		if msg[1] == unix.SOCK_DGRAM {
			t.Errorf("a datagram socket named %q", name)
		}
		if !strings.HasPrefix(name, "@") && strings.IndexByte(name, 0) >= 0 {
			t.Errorf("path name %q keeps a NUL", name)
		}
	})
}

func TestUnixDiagName(t *testing.T) {
	for _, c := range []struct {
		msg  []byte
		name string
		ok   bool
	}{
		{unixMsg(unix.SOCK_STREAM, "/run/zd/app.sock\x00"), "/run/zd/app.sock", true},
		{unixMsg(unix.SOCK_STREAM, "\x00zd\x00x"), "@zd\x00x", true},
		{unixMsg(unix.SOCK_DGRAM, "/run/x\x00"), "", false},
		{unixMsg(unix.SOCK_STREAM, "")[:sizeofUnixDiagMsg], "", false},
	} {
		if name, ok := unixDiagStreamName(c.msg); name != c.name || ok != c.ok {
			t.Errorf("unixDiagStreamName(%q) = %q, %v; want %q, %v", c.msg, name, ok, c.name, c.ok)
		}
	}
}
