package fdpass

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns two connected unix stream sockets.
func pair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// countFDs counts this process's open descriptors.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory being read
}

// listener returns a TCP listening socket as a file and its address.
func listener(t testing.TB) (*os.File, string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	a := sa.(*unix.SockaddrInet4)
	return os.NewFile(uintptr(fd), "l"), net.JoinHostPort(net.IP(a.Addr[:]).String(), itoa(a.Port))
}

func itoa(i int) string { return strconv.Itoa(i) }

func localOf(t testing.TB, f *os.File) string {
	t.Helper()
	rc, _ := f.SyscallConn()
	var sa unix.Sockaddr
	var err error
	rc.Control(func(fd uintptr) { sa, err = unix.Getsockname(int(fd)) })
	if err != nil {
		t.Fatal(err)
	}
	a := sa.(*unix.SockaddrInet4)
	return net.JoinHostPort(net.IP(a.Addr[:]).String(), itoa(a.Port))
}

func cloexec(t testing.TB, f *os.File) bool {
	rc, _ := f.SyscallConn()
	var fl int
	rc.Control(func(fd uintptr) { fl, _ = unix.FcntlInt(fd, unix.F_GETFD, 0) })
	return fl&unix.FD_CLOEXEC != 0
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, MaxPerMsg, MaxPerMsg + 1, 3*MaxPerMsg + 7} {
		t.Run("n="+itoa(n), func(t *testing.T) {
			a, b := pair(t)
			defer a.Close()
			defer b.Close()
			var files []*os.File
			var want []FD
			for i := 0; i < n; i++ {
				f, addr := listener(t)
				files = append(files, f)
				want = append(want, FD{Name: "l" + itoa(i), Family: "inet", Type: "stream", Local: addr, File: f})
			}
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- Send(ctx, a, want) }()
			got, err := Recv(ctx, b, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			defer CloseAll(got)
			if len(got) != n {
				t.Fatalf("received %d fds; want %d", len(got), n)
			}
			for i, fd := range got {
				if fd.Name != want[i].Name || fd.Local != want[i].Local || fd.Family != "inet" || fd.Type != "stream" {
					t.Errorf("fd %d = %+v; want %+v", i, fd, want[i])
				}
				if l := localOf(t, fd.File); l != want[i].Local {
					t.Errorf("fd %d is bound to %s; want %s (order kept)", i, l, want[i].Local)
				}
				if fd.File.Name() != want[i].Name {
					t.Errorf("fd %d file name %q; want %q", i, fd.File.Name(), want[i].Name)
				}
				if !cloexec(t, fd.File) {
					t.Errorf("fd %d is not close-on-exec", i)
				}
			}
		})
	}
}

// rawBatch sends one batch message carrying fds with the given data byte.
func rawBatch(t testing.TB, c *net.UnixConn, marker byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte{marker}, oob, nil); err != nil {
		t.Fatal(err)
	}
}

func rawHeader(t testing.TB, c *net.UnixConn, h header) {
	t.Helper()
	b, err := encodeHeader(&h)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(c, b); err != nil {
		t.Fatal(err)
	}
}

func metas(n int) []meta {
	m := make([]meta, n)
	for i := range m {
		m[i] = meta{Name: "x"}
	}
	return m
}

// Every malformed handoff is a clean error, and every descriptor that
// arrived before the problem is closed: the descriptor count after equals
// the count before.
func TestRecvErrorsNoLeak(t *testing.T) {
	l, _ := listener(t)
	defer l.Close()
	rc, _ := l.SyscallConn()
	var lfd int
	rc.Control(func(fd uintptr) { lfd = int(fd) })
	many := make([]int, 10)
	for i := range many {
		many[i] = lfd
	}
	tests := []struct {
		name  string
		limit int
		send  func(t *testing.T, c *net.UnixConn)
		want  string
	}{
		{"garbage", 10, func(t *testing.T, c *net.UnixConn) {
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, "more than the limit"},
		{"garbage frame", 10, func(t *testing.T, c *net.UnixConn) {
			writeFrame(c, []byte{0xc1, 0xff, 0x00})
		}, "decode fd header"},
		{"truncated length", 10, func(t *testing.T, c *net.UnixConn) {
			c.Write([]byte{0, 0})
			c.CloseWrite()
		}, "unexpected EOF"},
		{"truncated header", 10, func(t *testing.T, c *net.UnixConn) {
			b, _ := encodeHeader(&header{Version: Version, Count: 1, FDs: metas(1)})
			var lb [4]byte
			binary.BigEndian.PutUint32(lb[:], uint32(len(b)))
			c.Write(append(lb[:], b[:len(b)-2]...))
			c.CloseWrite()
		}, "truncated frame"},
		{"empty", 10, func(t *testing.T, c *net.UnixConn) { c.CloseWrite() }, "peer closed the connection before the fd header"},
		{"wrong version", 10, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: 2, Count: 1, FDs: metas(1)})
			rawBatch(t, c, batchMarker, lfd)
		}, "peer speaks protocol version 2, this side 1"},
		{"too many", 5, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 10, FDs: metas(10)})
			rawBatch(t, c, batchMarker, many...)
		}, "peer offers 10 fds, more than the limit of 5"},
		{"count mismatch", 10, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 3, FDs: metas(2)})
		}, "count 3 but 2 descriptions"},
		{"more fds than announced", 20, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 4, FDs: metas(4)})
			rawBatch(t, c, batchMarker, many[:3]...)
			rawBatch(t, c, batchMarker, many[:3]...)
		}, "peer sent 6 fds, more than the 4 announced"},
		{"closed mid-way", 20, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 8, FDs: metas(8)})
			rawBatch(t, c, batchMarker, many[:5]...)
			c.CloseWrite()
		}, "peer closed the connection after 5 of 8 fds"},
		{"wrong marker", 20, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 8, FDs: metas(8)})
			rawBatch(t, c, batchMarker, many[:2]...)
			rawBatch(t, c, 'X', many[:2]...)
		}, "unexpected byte 0x58"},
		{"batch without fds", 20, func(t *testing.T, c *net.UnixConn) {
			rawHeader(t, c, header{Version: Version, Count: 2, FDs: metas(2)})
			rawBatch(t, c, batchMarker, many[:1]...)
			rawBatch(t, c, batchMarker)
		}, "batch without fds after 1 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := countFDs(t)
			a, b := pair(t)
			tt.send(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Recv(ctx, b, tt.limit)
			if err == nil || got != nil {
				CloseAll(got)
				t.Fatalf("Recv = %d fds, %v; want an error", len(got), err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Recv error %q; want it to contain %q", err, tt.want)
			}
			a.Close()
			b.Close()
			if after := countFDs(t); after != before {
				t.Errorf("%d fds open before, %d after: leak", before, after)
			}
		})
	}
}

func TestRecvVersionError(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	rawHeader(t, a, header{Version: 7})
	_, err := Recv(context.Background(), b, 1)
	if !errors.Is(err, ErrVersion) {
		t.Errorf("Recv = %v; want ErrVersion", err)
	}
}

func TestRecvDeadline(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Recv(ctx, b, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Recv from a silent peer = %v; want DeadlineExceeded", err)
	}
	// Cancellation without a deadline ends it too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := Recv(ctx2, b, 1); errc <- err }()
	cancel2()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after cancel = %v; want Canceled", err)
	}
	// And the connection is usable again afterwards.
	go func() { errc <- Send(context.Background(), a, nil) }()
	if got, err := Recv(context.Background(), b, 1); err != nil || len(got) != 0 {
		t.Errorf("Recv after a deadline = %v, %v; want an empty handoff", got, err)
	}
	<-errc
}

func TestMsgRoundTrip(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	type msg struct {
		V  int    `msgpack:"v"`
		Op string `msgpack:"op"`
	}
	ctx := context.Background()
	go WriteMsg(ctx, a, msg{V: 1, Op: "ls"})
	var m msg
	if err := ReadMsg(ctx, b, 100, &m); err != nil || m.Op != "ls" {
		t.Fatalf("ReadMsg = %+v, %v", m, err)
	}
	go WriteMsg(ctx, a, msg{V: 1, Op: strings.Repeat("x", 200)})
	if err := ReadMsg(ctx, b, 100, &m); err == nil || !strings.Contains(err.Error(), "more than the limit of 100") {
		t.Errorf("ReadMsg of an oversized frame = %v", err)
	}
}

func TestPeerCred(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	c, err := PeerCred(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.PID != os.Getpid() || c.UID != os.Getuid() || c.GID != os.Getgid() {
		t.Errorf("PeerCred = %+v; want this process", c)
	}
}

func TestCheckPeer(t *testing.T) {
	me := os.Getuid()
	other := me + 1000
	if err := CheckPeer(Cred{PID: 1, UID: me, GID: 5}, nil); err != nil {
		t.Errorf("same uid refused: %v", err)
	}
	if err := CheckPeer(Cred{PID: 1, UID: 0, GID: 0}, nil); err != nil {
		t.Errorf("root refused: %v", err)
	}
	if err := CheckPeer(Cred{PID: 1, UID: other, GID: 4321}, []int{4321}); err != nil {
		t.Errorf("allowed gid refused: %v", err)
	}
	err := CheckPeer(Cred{PID: 77, UID: other, GID: 4321}, []int{1})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "pid 77") || !strings.Contains(err.Error(), "--allow-gid 4321") {
		t.Errorf("CheckPeer of a stranger = %v; want a refusal naming pid 77 and --allow-gid 4321", err)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, h := range []header{
		{Version: 1},
		{Version: 1, Count: 2, FDs: []meta{{Name: "web", Family: "inet", Type: "stream", Local: "127.0.0.1:80"}, {Name: "u", Family: "unix", Type: "stream", Local: "/run/x"}}},
		{Version: 2, Count: 1, FDs: metas(1)},
	} {
		b, _ := encodeHeader(&h)
		f.Add(b)
	}
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b, 64)
		if err != nil {
			return
		}
		enc, err := encodeHeader(&h)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, err := decodeHeader(enc, 64)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", h, err)
		}
		enc2, _ := encodeHeader(&h2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip differs: %x vs %x", enc, enc2)
		}
	})
}
