package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "zdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func receive(t *testing.T, r *Receiver) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := r.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return m
}

func TestNotifyReceive(t *testing.T) {
	for _, path := range []string{filepath.Join(sockDir(t), "n.sock"), "@zd-test-" + t.Name() + "-" + time.Now().Format("150405.000000000")} {
		r, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen(%s): %v", path, err)
		}
		if r.Path() != path {
			t.Errorf("Path() = %q; want %q", r.Path(), path)
		}
		getenv := func(k string) string {
			if k == "NOTIFY_SOCKET" {
				return path
			}
			return ""
		}
		sent, err := Notify(getenv, "READY=1\nSTATUS=serving 3 conns\n")
		if !sent || err != nil {
			t.Fatalf("Notify = %v, %v; want true, nil", sent, err)
		}
		m := receive(t, r)
		if m.PID != os.Getpid() || m.UID != os.Getuid() || m.GID != os.Getgid() {
			t.Errorf("credentials = %d/%d/%d; want %d/%d/%d", m.PID, m.UID, m.GID, os.Getpid(), os.Getuid(), os.Getgid())
		}
		if v, ok := m.Get(KeyStatus); !ok || v != "serving 3 conns" {
			t.Errorf("Get(STATUS) = %q, %v", v, ok)
		}
		if !m.Is(KeyReady) || m.Is(KeyStopping) {
			t.Errorf("Is(READY) = %v, Is(STOPPING) = %v; want true, false", m.Is(KeyReady), m.Is(KeyStopping))
		}
		if string(m.Raw) != "READY=1\nSTATUS=serving 3 conns\n" {
			t.Errorf("Raw = %q", m.Raw)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if path[0] == '/' {
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file still there after Close: %v", err)
			}
		}
	}
}

func TestMessageInt(t *testing.T) {
	fields, _ := Parse([]byte("EXTEND_TIMEOUT_USEC=5000000\nMAINPID=x\nERRNO=-2"))
	m := Message{Fields: fields}
	if n, ok := m.Int(KeyExtendTimeoutUsec); n != 5000000 || !ok {
		t.Errorf("Int(EXTEND_TIMEOUT_USEC) = %d, %v; want 5000000, true", n, ok)
	}
	if n, ok := m.Int(KeyErrno); n != -2 || !ok {
		t.Errorf("Int(ERRNO) = %d, %v; want -2, true", n, ok)
	}
	if _, ok := m.Int(KeyMainPID); ok {
		t.Error("Int(MAINPID=x) ok; want false")
	}
	if _, ok := m.Int(KeyStatus); ok {
		t.Error("Int(missing) ok; want false")
	}
}

func TestNotifyUnset(t *testing.T) {
	sent, err := Notify(func(string) string { return "" }, "READY=1")
	if sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
	if err := NotifyTo("vsock:2:1234", "READY=1"); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("NotifyTo(vsock) = %v; want unsupported", err)
	}
	if err := NotifyTo(filepath.Join(sockDir(t), "none"), "READY=1"); err == nil {
		t.Error("NotifyTo(missing socket) = nil; want error")
	}
}

func TestReceiveSkipsBadDatagrams(t *testing.T) {
	path := filepath.Join(sockDir(t), "n.sock")
	r, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, bad := range []string{strings.Repeat("A", MaxDatagram+1), strings.Repeat("X=", 40000), "no equals", "=1", "lower=1", "A=b\x00c", "\n\n"} {
		if err := NotifyTo(path, bad); err != nil {
			t.Fatalf("NotifyTo(%.20q): %v", bad, err)
		}
	}
	if err := NotifyTo(path, "STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	m := receive(t, r)
	if !m.Is(KeyStopping) {
		t.Errorf("first good message = %q; want STOPPING=1", m.Raw)
	}
	if got := r.Dropped(); got != 7 {
		t.Errorf("Dropped() = %d; want 7", got)
	}
}

func TestReceiveContextAndClose(t *testing.T) {
	r, err := Listen(filepath.Join(sockDir(t), "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.Receive(ctx); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Receive after cancel = %v; want context.Canceled", err)
	}
	// The receiver still works with a fresh context after a cancelled one.
	if err := NotifyTo(r.Path(), "WATCHDOG=1"); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, r); !m.Is(KeyWatchdog) {
		t.Errorf("got %q; want WATCHDOG=1", m.Raw)
	}
	go func() { _, err := r.Receive(context.Background()); done <- err }()
	r.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Receive after Close = %v; want ErrClosed", err)
	}
}

func TestListenStaleAndLive(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "n.sock")
	r, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another process is receiving on it") {
		t.Errorf("Listen on a live socket = %v; want 'another process is receiving on it'", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode(), err)
	}
	// Leave a stale socket file behind: close the fd without Close's cleanup.
	f, err := r.File()
	if err != nil {
		t.Fatal(err)
	}
	r.conn.Close()
	f.Close()
	r2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	r2.Close()

	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a regular file = %v; want 'is not a socket'", err)
	}
	if _, err := Listen("relative.sock"); err == nil {
		t.Error("Listen(relative) = nil; want error")
	}
}

func TestFromFile(t *testing.T) {
	path := filepath.Join(sockDir(t), "n.sock")
	r, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.File()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := FromFile(f)
	f.Close()
	if err != nil {
		t.Fatalf("FromFile: %v", err)
	}
	if r2.Path() != path {
		t.Errorf("FromFile Path = %q; want %q", r2.Path(), path)
	}
	r.conn.Close() // the old owner goes away without removing the file
	if err := NotifyTo(path, "MAINPID=42"); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, r2); m.PID != os.Getpid() {
		t.Errorf("PID = %d; want %d", m.PID, os.Getpid())
	}
	r2.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}
	nf, _ := os.Open(os.DevNull)
	defer nf.Close()
	if _, err := FromFile(nf); err == nil {
		t.Error("FromFile(/dev/null) = nil; want error")
	}
}

func TestMonotonicUsec(t *testing.T) {
	a := MonotonicUsec()
	b := MonotonicUsec()
	if a <= 0 || b < a {
		t.Errorf("MonotonicUsec = %d then %d; want positive, non-decreasing", a, b)
	}
}

// TestFromFileTurnsOnPassCred: a socket bound elsewhere without SO_PASSCRED
// still yields credentials once adopted.
func TestFromFileTurnsOnPassCred(t *testing.T) {
	path := filepath.Join(sockDir(t), "plain.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromFile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := NotifyTo(path, "READY=1"); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, r); m.PID != os.Getpid() {
		t.Errorf("PID = %d; want %d (SO_PASSCRED on)", m.PID, os.Getpid())
	}
}

func TestNoCredentials(t *testing.T) {
	var m Message
	parseOOB(nil, &m)
	if m.PID != 0 || m.UID != 0 || m.GID != 0 {
		t.Errorf("credentials without control data = %d/%d/%d; want 0/0/0", m.PID, m.UID, m.GID)
	}
}
