package zdhandoff

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
	"github.com/zdtools/zd/pkg/handoff"
	"golang.org/x/sys/unix"
)

func tcpListenerFile(t *testing.T) *os.File {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The shim path (used where listenfd.Exec cannot unshare its descriptor
// table) puts the fds in order, names them and keeps the pid.
func TestExecViaShim(t *testing.T) {
	self, _ := os.Executable()
	cmd := exec.Command(self, "/bin/sh", "-c", `echo "$LISTEN_FDS $LISTEN_FDNAMES"; test "$LISTEN_PID" = "$$" && echo pid-ok; env | grep -c '^ZD_HANDOFF_SHIM' || true`)
	cmd.Env = append(os.Environ(), "ZDHANDOFF_TEST_VIASHIM=1")
	cmd.ExtraFiles = []*os.File{tcpListenerFile(t), tcpListenerFile(t)}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if got := out.String(); got != "2 b:a\npid-ok\n0\n" {
		t.Errorf("output %q; want 2 b:a, pid-ok, no shim variables", got)
	}
}

// A failed exec in the shim is reported on the connection.
func TestExecViaShimFailureReported(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "notexec")
	os.WriteFile(bad, []byte("not a program\n"), 0o755)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, bad)
	cmd.Env = append(os.Environ(), "ZDHANDOFF_TEST_VIASHIM=1")
	cmd.ExtraFiles = []*os.File{tcpListenerFile(t), tcpListenerFile(t), theirs}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	nc, err := net.FileConn(mine)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var st handoff.Status
	rerr := fdpass.ReadMsg(ctx, nc.(*net.UnixConn), handoff.MaxMsg, &st)
	werr := cmd.Wait()
	if rerr != nil || st.Op != handoff.OpFailed || !strings.Contains(st.Error, "exec format error") {
		t.Errorf("status = %+v, %v; want failed with exec format error", st, rerr)
	}
	if werr == nil || !strings.Contains(errb.String(), "exec format error") || !strings.Contains(errb.String(), "hint:") {
		t.Errorf("shim exit %v, stderr %q; want a failure with a hint", werr, errb.String())
	}
}

// Through the shim, the connection of a release survives the exec: the
// command finds it at $ZD_HANDOFF_RELEASE_FD, above its LISTEN_FDS.
func TestExecViaShimKeepsReleaseConn(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	self, _ := os.Executable()
	cmd := exec.Command(self, "/bin/sh", "-c", `echo "$LISTEN_FDS $ZD_HANDOFF_RELEASE_FD $(readlink /proc/$$/fd/$ZD_HANDOFF_RELEASE_FD | cut -c1-7)"; echo hello >&$ZD_HANDOFF_RELEASE_FD`)
	cmd.Env = append(os.Environ(), "ZDHANDOFF_TEST_VIASHIM=1")
	cmd.ExtraFiles = []*os.File{tcpListenerFile(t), tcpListenerFile(t), theirs}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	theirs.Close()
	var n, fd int
	var kind string
	if _, err := fmt.Sscanf(out.String(), "%d %d %s", &n, &fd, &kind); err != nil || n != 2 || fd < 5 || kind != "socket:" {
		t.Errorf("output %q; want 2 fds and the connection, a socket, above them", out.String())
	}
	mine.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 16)
	got, _ := mine.Read(b)
	if string(b[:got]) != "hello\n" {
		t.Errorf("read %q from the connection; want what the command wrote on it", b[:got])
	}
}
