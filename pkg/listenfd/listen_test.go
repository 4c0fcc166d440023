package listenfd

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// sockDir is a short directory for unix sockets (sun_path is 108 bytes).
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lfd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func mustListen(t *testing.T, spec string) (*os.File, Info) {
	t.Helper()
	sp, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sp.Listen()
	if err != nil {
		t.Fatalf("Listen(%s): %v", spec, err)
	}
	t.Cleanup(func() { f.Close() })
	info, err := Describe(f)
	if err != nil {
		t.Fatalf("Describe(%s): %v", spec, err)
	}
	return f, info
}

func fdFlags(t *testing.T, f *os.File) (cloexec, nonblock bool) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		fl, _ := unix.FcntlInt(fd, unix.F_GETFD, 0)
		st, _ := unix.FcntlInt(fd, unix.F_GETFL, 0)
		cloexec, nonblock = fl&unix.FD_CLOEXEC != 0, st&unix.O_NONBLOCK != 0
	})
	return
}

func sockopt(t *testing.T, f *os.File, level, opt int) int {
	t.Helper()
	rc, _ := f.SyscallConn()
	var v int
	var err error
	rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), level, opt) })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// roundTrip accepts one connection on f and checks a line gets through.
func roundTrip(t *testing.T, f *os.File, network, addr string) {
	t.Helper()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, "hello")
		c.Close()
	}()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "hello\n" {
		t.Fatalf("read %q, %v; want hello", line, err)
	}
}

func TestListenTCP(t *testing.T) {
	f, info := mustListen(t, "web=tcp://127.0.0.1:0?backlog=7")
	if f.Name() != "web" {
		t.Errorf("Name() = %q; want web", f.Name())
	}
	if info.Family != "inet" || info.Type != "stream" || !info.Listening || !strings.HasPrefix(info.Local, "127.0.0.1:") {
		t.Errorf("Describe = %+v; want a listening inet stream on 127.0.0.1", info)
	}
	if info.Network() != "tcp" {
		t.Errorf("Network() = %q; want tcp", info.Network())
	}
	if cloexec, nonblock := fdFlags(t, f); !cloexec || nonblock {
		t.Errorf("cloexec=%v nonblock=%v; want close-on-exec, blocking", cloexec, nonblock)
	}
	if v := sockopt(t, f, unix.SOL_SOCKET, unix.SO_REUSEADDR); v != 1 {
		t.Errorf("SO_REUSEADDR = %d; want 1 by default", v)
	}
	roundTrip(t, f, "tcp", info.Local)
}

func TestListenOptions(t *testing.T) {
	f, _ := mustListen(t, "tcp4://127.0.0.1:0?reuseport=1&reuseaddr=0")
	if v := sockopt(t, f, unix.SOL_SOCKET, unix.SO_REUSEPORT); v != 1 {
		t.Errorf("SO_REUSEPORT = %d; want 1", v)
	}
	if v := sockopt(t, f, unix.SOL_SOCKET, unix.SO_REUSEADDR); v != 0 {
		t.Errorf("SO_REUSEADDR = %d; want 0", v)
	}
	if _, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	_, info := mustListen(t, "tcp6://[::1]:0")
	if info.Family != "inet6" || !strings.HasPrefix(info.Local, "[::1]:") {
		t.Errorf("Describe = %+v; want inet6 on [::1]", info)
	}
	// (Linux forces IPV6_V6ONLY on a socket bound to a specific IPv6
	// address, so only a wildcard shows the option.)
	f6, _ := mustListen(t, "tcp6://[::]:0?v6only=1")
	if v := sockopt(t, f6, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); v != 1 {
		t.Errorf("IPV6_V6ONLY = %d; want 1", v)
	}
	fw, info := mustListen(t, "tcp://[::]:0")
	if v := sockopt(t, fw, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); v != 0 || info.Family != "inet6" {
		t.Errorf("wildcard tcp:// gives %s with IPV6_V6ONLY=%d; want dual-stack inet6", info.Family, v)
	}
	_, port, _ := net.SplitHostPort(info.Local)
	roundTrip(t, fw, "tcp4", "127.0.0.1:"+port) // dual stack: IPv4 clients too
}

func TestListenUDP(t *testing.T) {
	f, info := mustListen(t, "udp://127.0.0.1:0")
	if info.Type != "dgram" || info.Listening || info.Network() != "udp" {
		t.Fatalf("Describe = %+v; want a udp dgram socket", info)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := net.Dial("udp", info.Local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 8)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("ReadFrom = %q, %v; want ping", buf[:n], err)
	}
}

func TestListenUnix(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "a.sock")
	f, info := mustListen(t, "unix://"+path+"?mode=0640")
	if info.Family != "unix" || info.Local != path || !info.Listening {
		t.Errorf("Describe = %+v; want a listening unix socket at %s", info, path)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o640 || st.Mode().Type() != os.ModeSocket {
		t.Errorf("socket file %v, %v; want a 0640 socket", st.Mode(), err)
	}
	roundTrip(t, f, "unix", path)

	// Live: refused, and the file stays.
	f2, err := Spec{Network: "unix", Address: path}.Listen()
	if err == nil {
		f2.Close()
		t.Fatal("second Listen on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), "another process is listening on it") {
		t.Errorf("error %q; want it to say someone listens", err)
	}
}

func TestListenUnixStale(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "stale.sock")
	// A socket file nobody listens on any more.
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	f, info := mustListen(t, "unix://"+path)
	if info.Local != path {
		t.Errorf("Local = %q; want %q", info.Local, path)
	}
	roundTrip(t, f, "unix", path)

	// Not a socket: never removed.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep"), 0o600)
	if _, err := (Spec{Network: "unix", Address: plain}).Listen(); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a regular file: %v; want 'is not a socket'", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Errorf("regular file was touched")
	}
}

func TestListenUnixKinds(t *testing.T) {
	dir := sockDir(t)
	name := fmt.Sprintf("@zd-listenfd-test-%d", os.Getpid())
	_, info := mustListen(t, "unix://"+name)
	if info.Local != name {
		t.Errorf("abstract Local = %q; want %q", info.Local, name)
	}
	_, info = mustListen(t, "unixpacket://"+filepath.Join(dir, "p.sock"))
	if info.Type != "seqpacket" || info.Network() != "unixpacket" || !info.Listening {
		t.Errorf("unixpacket Describe = %+v", info)
	}
	_, info = mustListen(t, "unixgram://"+filepath.Join(dir, "g.sock"))
	if info.Type != "dgram" || info.Network() != "unixgram" {
		t.Errorf("unixgram Describe = %+v", info)
	}
}

func TestListenErrors(t *testing.T) {
	f, info := mustListen(t, "tcp://127.0.0.1:0?reuseaddr=0")
	_ = f
	sp, _ := ParseSpec("tcp://" + info.Local + "?reuseaddr=0")
	if _, err := sp.Listen(); !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), info.Local) {
		t.Errorf("Listen on a taken port: %v; want EADDRINUSE naming %s", err, info.Local)
	}
	sp, _ = ParseSpec("tcp://no-such-host.invalid:80")
	if _, err := sp.Listen(); err == nil || !strings.Contains(err.Error(), "no-such-host.invalid") {
		t.Errorf("Listen on an unresolvable host: %v", err)
	}
	sp, _ = ParseSpec("unix:///nonexistent-dir-zd/x.sock")
	if _, err := sp.Listen(); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Listen in a missing directory: %v; want ENOENT", err)
	}
	before := countFDs(t)
	files, err := ListenAll([]Spec{{Network: "tcp", Address: "127.0.0.1:0"}, sp})
	if err == nil || files != nil {
		t.Errorf("ListenAll with a bad spec = %v, %v; want nil and an error", files, err)
	}
	if after := countFDs(t); after != before {
		t.Errorf("ListenAll failure left %d fds open (%d before)", after, before)
	}
}

func TestDescribeNotSocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Describe(f); !errors.Is(err, unix.ENOTSOCK) {
		t.Errorf("Describe(/dev/null) = %v; want ENOTSOCK", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
