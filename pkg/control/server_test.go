package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestStream(t *testing.T) {
	_, path := startServer(t, Options{})
	var got []int
	var res string
	err := CallStream(testCtx(t), path, "count", echoArgs{Text: "done", Count: 50}, func(raw msgpack.RawMessage) error {
		var ev struct {
			N int `msgpack:"n"`
		}
		if err := Unmarshal(raw, &ev); err != nil {
			return err
		}
		got = append(got, ev.N)
		return nil
	}, &res)
	if err != nil || res != "done" {
		t.Fatalf("CallStream = %q, %v", res, err)
	}
	if len(got) != 50 {
		t.Fatalf("got %d events; want 50", len(got))
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("events out of order: %v", got)
		}
	}
	// Call ignores the events and still gets the result.
	if err := Call(testCtx(t), path, "count", echoArgs{Text: "x", Count: 3}, &res); err != nil || res != "x" {
		t.Errorf("Call(count) = %q, %v", res, err)
	}
}

// TestClientGoesAway: the handler's context ends when the client hangs up,
// or when onEvent refuses an event.
func TestClientGoesAway(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ended := make(chan string, 4)
	started := make(chan struct{}, 4)
	h := func(ctx context.Context, req *Request, s Stream) (any, error) {
		started <- struct{}{}
		if req.Op == "watch" {
			for i := 0; ctx.Err() == nil && i < 100000; i++ {
				if err := s.Send(i); err != nil {
					break
				}
			}
		}
		<-ctx.Done()
		ended <- req.Op
		return nil, ctx.Err()
	}
	go srv.Serve(context.Background(), h)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Call(ctx, path, "block", nil, nil) }()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Call after cancel = %v; want context.Canceled", err)
	}
	if op := <-ended; op != "block" {
		t.Errorf("ended %q; want block", op)
	}

	stop := errors.New("enough")
	n := 0
	err = CallStream(testCtx(t), path, "watch", nil, func(msgpack.RawMessage) error {
		if n++; n == 5 {
			return stop
		}
		return nil
	}, nil)
	if err != stop {
		t.Errorf("CallStream = %v; want the onEvent error as is", err)
	}
	if op := <-ended; op != "watch" {
		t.Errorf("ended %q; want watch", op)
	}
}

// TestCloseWaits: Close cancels running handlers and returns only after
// they have returned (goleak in TestMain checks nothing is left).
func TestCloseWaits(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var finished atomic.Bool
	h := func(ctx context.Context, req *Request, s Stream) (any, error) {
		close(started)
		<-ctx.Done()
		// Still busy for a moment after the cancel: Close must wait.
		for i := 0; i < 1000; i++ {
			runtime.Gosched()
		}
		finished.Store(true)
		return nil, ctx.Err()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), h) }()
	called := make(chan error, 1)
	go func() { called <- Call(testCtx(t), path, "block", nil, nil) }()
	<-started
	if err := srv.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if !finished.Load() {
		t.Fatal("handler still running after Close returned")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve = %v; want ErrServerClosed", err)
	}
	if err := <-called; CodeOf(err) != CodeUnavailable {
		t.Errorf("Call during Close = %v; want unavailable", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v; want it removed", err)
	}
	if err := srv.Serve(context.Background(), h); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v; want ErrServerClosed", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestServeContext: Serve returns nil when its ctx ends, leaving the
// listener open; a second Serve answers again.
func TestServeContext(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, testHandler) }()
	if err := Call(testCtx(t), path, "echo", 1, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after cancel = %v; want nil", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { served <- srv.Serve(ctx2, testHandler) }()
	var n int
	if err := Call(testCtx(t), path, "echo", 2, &n); err != nil || n != 2 {
		t.Errorf("Call after re-Serve = %d, %v", n, err)
	}
	if err := srv.Serve(ctx2, testHandler); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("concurrent Serve = %v; want 'already running'", err)
	}
	cancel2()
	<-served
}

func TestListenLiveAndModes(t *testing.T) {
	srv, path := startServer(t, Options{})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode = %v, %v; want 0600 socket", fi.Mode(), err)
	}
	_, err = Listen(path, Options{})
	if err == nil || err.Error() != "another process is serving "+path+"; stop it first, or choose another state directory or --name" {
		t.Errorf("Listen on a live socket = %v; want 'another process is serving'", err)
	}
	// The live server was not disturbed.
	if err := Call(testCtx(t), path, "echo", 1, nil); err != nil {
		t.Errorf("Call after refused Listen: %v", err)
	}
	_ = srv

	p2 := filepath.Join(sockDir(t), "g.sock")
	s2, err := Listen(p2, Options{AllowGIDs: []int{65534}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	fi, err = os.Stat(p2)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode with AllowGIDs = %v, %v; want 0660", fi.Mode(), err)
	}
	file := filepath.Join(sockDir(t), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, Options{}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a file = %v; want 'is not a socket'", err)
	}
}

// TestFromListener carries a listening socket to a second Server, as a
// re-exec'd daemon does.
func TestFromListener(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	srv.unlinkIno = 0 // the successor owns the file now
	srv.Close()
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := FromListener(l.(*net.UnixListener), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if srv2.Path() != path {
		t.Errorf("Path = %q; want %q", srv2.Path(), path)
	}
	go srv2.Serve(context.Background(), testHandler)
	var s string
	if err := Call(testCtx(t), path, "echo", "carried", &s); err != nil || s != "carried" {
		t.Errorf("Call on the carried socket = %q, %v", s, err)
	}
}

func TestBusy(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	started := make(chan struct{}, 1)
	go srv.Serve(context.Background(), func(ctx context.Context, req *Request, s Stream) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Call(ctx, path, "block", nil, nil) }()
	<-started
	err = Call(testCtx(t), path, "other", nil, nil)
	if CodeOf(err) != CodeBusy || !strings.Contains(err.Error(), "too many control connections (1)") {
		t.Errorf("Call beyond MaxConns = %v; want busy", err)
	}
	cancel()
	<-done
}

func TestResultTooLarge(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{MaxFrameSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(context.Background(), func(ctx context.Context, req *Request, s Stream) (any, error) {
		if req.Op == "bad" {
			return func() {}, nil
		}
		if err := s.Send(strings.Repeat("e", 200)); err == nil {
			return nil, errors.New("Send of an oversized event succeeded")
		}
		return strings.Repeat("x", 200), nil
	})
	err = Call(testCtx(t), path, "big", nil, nil)
	if CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "too large") {
		t.Errorf("Call(big) = %v; want internal 'too large'", err)
	}
	if err := Call(testCtx(t), path, "bad", nil, nil); CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "encode result") {
		t.Errorf("Call(bad) = %v; want internal 'encode result'", err)
	}
}

func TestFromFile(t *testing.T) {
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	srv.unlinkIno = 0 // the predecessor hands the socket on and goes away
	srv.Close()
	srv2, err := FromFile(f, Options{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv2.Serve(context.Background(), testHandler) }()
	var n int
	if err := Call(testCtx(t), path, "echo", 7, &n); err != nil || n != 7 {
		t.Errorf("Call on the inherited socket = %d, %v", n, err)
	}
	srv2.Close()
	<-served
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after the successor's Close: %v; want removed", err)
	}
	nf, _ := os.Open(os.DevNull)
	defer nf.Close()
	if _, err := FromFile(nf, Options{}); err == nil {
		t.Error("FromFile(/dev/null) = nil; want error")
	}
}

func TestLongPath(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 110) + "/c.sock"
	if _, err := Listen(long, Options{}); err == nil || !strings.Contains(err.Error(), "choose a shorter --state-dir") {
		t.Errorf("Listen(long path) = %v; want a too-long error", err)
	}
	if err := Call(testCtx(t), long, "x", nil, nil); err == nil || !strings.Contains(err.Error(), "longer than the 107") {
		t.Errorf("Call(long path) = %v; want a too-long error", err)
	}
}
