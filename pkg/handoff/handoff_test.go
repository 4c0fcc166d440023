package handoff

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
)

// sockDir is a short directory for unix socket paths (sun_path is 108 bytes).
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "zdh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServer offers one TCP listener named web on a published socket in
// an in-process Server.
func startServer(t *testing.T) (*Server, string, string) {
	t.Helper()
	path := filepath.Join(sockDir(t), "h.sock")
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
	sock, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Files: []*os.File{f},
		Offers:  []Offer{{Name: "web", Family: "inet", Type: "stream", Local: ln.Addr().String()}},
		Timeout: 10 * time.Second, ReleaseTimeout: 10 * time.Second, Socket: sock})
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, path, ln.Addr().String()
}

func TestLsTake(t *testing.T) {
	srv, path, addr := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := Ls(ctx, path)
	if err != nil || rep.PID != os.Getpid() || len(rep.FDs) != 1 || rep.FDs[0].Name != "web" {
		t.Fatalf("Ls = %+v, %v; want pid %d offering web", rep, err, os.Getpid())
	}
	// An unknown name is refused with the server's message and hint.
	_, _, _, err = Take(ctx, path, []string{"nope"}, false)
	var he *Error
	if !errors.As(err, &he) || he.Kind != KindFailure || !strings.Contains(he.Message, "no descriptor named nope on offer (offered: web)") ||
		!strings.Contains(he.Hint, "zd-handoff ls") {
		t.Errorf("Take(nope) = %v; want a refusal naming what is offered", err)
	}
	conn, rep, fds, err := Take(ctx, path, []string{"web"}, false)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	defer fdpass.CloseAll(fds)
	if rep.PID != os.Getpid() || len(fds) != 1 || fds[0].Name != "web" || fds[0].Local != addr {
		t.Fatalf("Take = %+v, %+v; want the web listener", rep, fds)
	}
	select {
	case ev := <-srv.Events():
		if ev.Kind != HandedOver || ev.PID != os.Getpid() {
			t.Errorf("event %+v; want HandedOver to pid %d", ev, os.Getpid())
		}
	case <-ctx.Done():
		t.Fatal("no HandedOver event")
	}
	// The descriptor received is the very listener on offer: it accepts.
	ln, err := net.FileListener(fds[0].File)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the taken listener: %v", err)
	}
	a.Close()
	// Close removes the socket file, which is still ours.
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Close, stat %s: %v; want it gone", path, err)
	}
}

// Nothing serving: KindNotRunning, for a missing file and a stale one.
func TestDialNotRunning(t *testing.T) {
	dir := sockDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var he *Error
	if _, err := Ls(ctx, filepath.Join(dir, "missing.sock")); !errors.As(err, &he) || he.Kind != KindNotRunning || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Ls(missing) = %v; want KindNotRunning with ENOENT", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	s, err := Listen(stale)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close() // the file stays: SetUnlinkOnClose(false)
	if _, err := Ls(ctx, stale); !errors.As(err, &he) || he.Kind != KindNotRunning || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Ls(stale) = %v; want KindNotRunning with ECONNREFUSED", err)
	}
	// A server that never answers: KindTimeout once ctx ends.
	silent, err := net.Listen("unix", filepath.Join(dir, "silent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if _, err := Ls(sctx, silent.Addr().String()); !errors.As(err, &he) || he.Kind != KindTimeout {
		t.Errorf("Ls(silent) = %v; want KindTimeout", err)
	}
}

// Bind answers next to the path; Publish renames it onto the path
// atomically, and the socket it replaced no longer owns the path.
func TestBindPublish(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "h.sock")
	old, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !old.Ours() || old.Where() != path {
		t.Fatalf("Listen: Ours %v, Where %s; want ours at %s", old.Ours(), old.Where(), path)
	}
	next, err := Bind(path)
	if err != nil {
		t.Fatal(err)
	}
	if next.Where() == path || next.Ours() || !old.Ours() {
		t.Fatalf("Bind: answers at %s (ours %v), old ours %v; want next to the path, the old one still owning it", next.Where(), next.Ours(), old.Ours())
	}
	if err := next.Publish(); err != nil {
		t.Fatal(err)
	}
	if !next.Ours() || old.Ours() || next.Where() != path {
		t.Errorf("Publish: next ours %v, old ours %v; want the path to be next's", next.Ours(), old.Ours())
	}
	// The old one closing leaves the successor's file in place.
	old.Close(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !next.Ours() {
		t.Errorf("the old socket's Close removed its successor's file")
	}
	next.Close(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// A regular file at the path is never replaced.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	var he *Error
	if _, err := Bind(plain); !errors.As(err, &he) || he.Kind != KindUsage || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("Bind(regular file) = %v; want KindUsage", err)
	}
}
