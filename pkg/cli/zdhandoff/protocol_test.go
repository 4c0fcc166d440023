package zdhandoff

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
	"github.com/zdtools/zd/pkg/handoff"
)

// startServe runs the test binary as "zd-handoff serve" offering one TCP
// listener; it returns the socket path and the server's log.
func startServe(t *testing.T) (string, *bytes.Buffer) {
	t.Helper()
	dir, err := os.MkdirTemp("", "zdproto")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "h.sock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	self, _ := os.Executable()
	var log bytes.Buffer
	srv := exec.Command(self, "serve", "--socket", sock, "--fd", "3=web", "--timeout", "5s")
	srv.Env = append(os.Environ(), "ZDHANDOFF_TEST_MAIN=1")
	srv.ExtraFiles = []*os.File{lf}
	srv.Stderr = &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	})
	waitSocket(t, sock)
	return sock, &log
}

func dialSock(t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

func TestServeProtocol(t *testing.T) {
	sock, _ := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Another protocol version is refused, and says so.
	c := dialSock(t, sock)
	if err := fdpass.WriteMsg(ctx, c, handoff.Request{V: handoff.Version + 1, Op: handoff.OpTake}); err != nil {
		t.Fatal(err)
	}
	var rep handoff.Reply
	if err := fdpass.ReadMsg(ctx, c, handoff.MaxMsg, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Error == nil || !strings.Contains(rep.Error.Message, "protocol version 3 not supported, this server speaks 1 to 2") {
		t.Errorf("reply to version 3 = %+v; want a version refusal", rep)
	}
	// A release of version 1 (which stopped the server at the taker's
	// exec) is refused before anything is handed over.
	r1 := dialSock(t, sock)
	fdpass.WriteMsg(ctx, r1, handoff.Request{V: 1, Op: handoff.OpTake, Release: true})
	rep = handoff.Reply{}
	if err := fdpass.ReadMsg(ctx, r1, handoff.MaxMsg, &rep); err != nil || rep.OK || rep.Error == nil ||
		!strings.Contains(rep.Error.Message, "take --release of protocol version 1 is not supported") || !strings.Contains(rep.Error.Hint, "same zd-handoff version") {
		t.Errorf("reply to a version 1 release = %+v, %v; want a refusal", rep, err)
	}

	// Garbage, and a client that vanishes mid-request: the server goes on.
	g := dialSock(t, sock)
	g.Write([]byte("\x00\x00\x00\x04\xc1\xc1\xc1\xc1"))
	h := dialSock(t, sock)
	h.Write([]byte("\x00\x00\x10\x00partial"))
	h.Close()

	// An unknown request.
	u := dialSock(t, sock)
	fdpass.WriteMsg(ctx, u, handoff.Request{V: handoff.Version, Op: "frobnicate"})
	rep = handoff.Reply{}
	if err := fdpass.ReadMsg(ctx, u, handoff.MaxMsg, &rep); err != nil || rep.OK || !strings.Contains(rep.Error.Message, `unknown request "frobnicate"`) {
		t.Errorf("reply to an unknown op = %+v, %v", rep, err)
	}

	// Still serving: ls and take work.
	l := dialSock(t, sock)
	fdpass.WriteMsg(ctx, l, handoff.Request{V: handoff.Version, Op: handoff.OpLs})
	rep = handoff.Reply{}
	if err := fdpass.ReadMsg(ctx, l, handoff.MaxMsg, &rep); err != nil || !rep.OK || len(rep.FDs) != 1 || rep.FDs[0].Name != "web" {
		t.Fatalf("ls after garbage = %+v, %v", rep, err)
	}
	tk := dialSock(t, sock)
	fdpass.WriteMsg(ctx, tk, handoff.Request{V: handoff.Version, Op: handoff.OpTake, Names: []string{"web"}})
	rep = handoff.Reply{}
	if err := fdpass.ReadMsg(ctx, tk, handoff.MaxMsg, &rep); err != nil || !rep.OK {
		t.Fatalf("take reply = %+v, %v", rep, err)
	}
	fds, err := fdpass.Recv(ctx, tk, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer fdpass.CloseAll(fds)
	if len(fds) != 1 || fds[0].Name != "web" || fds[0].Family != "inet" || !strings.HasPrefix(fds[0].Local, "127.0.0.1:") {
		t.Errorf("took %+v; want the web listener", fds)
	}
	// The received listener is the server's: it accepts.
	ln, err := net.FileListener(fds[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", fds[0].Local); err == nil {
			c.Close()
		}
	}()
	if c, err := ln.Accept(); err != nil {
		t.Errorf("accept on the taken listener: %v", err)
	} else {
		c.Close()
	}
}
