package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "zdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type echoArgs struct {
	Text  string `msgpack:"text"`
	Count int    `msgpack:"count"`
}

// testHandler knows a few ops used across the tests.
func testHandler(ctx context.Context, req *Request, s Stream) (any, error) {
	switch req.Op {
	case "echo":
		var v any
		if err := req.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case "count":
		var a echoArgs
		if err := req.Decode(&a); err != nil {
			return nil, err
		}
		for i := 0; i < a.Count; i++ {
			if err := s.Send(map[string]any{"n": i}); err != nil {
				return nil, err
			}
		}
		return a.Text, nil
	case "fail":
		return nil, Errorf(CodeBusy, "wait", "a reload is in progress")
	case "oops":
		return nil, errors.New("disk on fire")
	case "panic":
		panic("boom")
	case "block":
		<-ctx.Done()
		return nil, ctx.Err()
	case "peer":
		return req.Peer, nil
	}
	return nil, UnknownOp(req.Op)
}

// startServer serves testHandler on a fresh socket until the test ends.
func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	path := filepath.Join(sockDir(t), "c.sock")
	srv, err := Listen(path, opts)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(context.Background(), testHandler); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v; want ErrServerClosed", err)
		}
	}()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		wg.Wait()
	})
	return srv, path
}

func TestCall(t *testing.T) {
	_, path := startServer(t, Options{})
	ctx := testCtx(t)
	var got map[string]any
	if err := Call(ctx, path, "echo", map[string]any{"a": "b"}, &got); err != nil || got["a"] != "b" {
		t.Fatalf("Call(echo) = %v, %v", got, err)
	}
	var peer Cred
	if err := Call(ctx, path, "peer", nil, &peer); err != nil || peer.PID != os.Getpid() || peer.UID != os.Getuid() {
		t.Errorf("Call(peer) = %+v, %v; want our pid and uid", peer, err)
	}
	err := Call(ctx, path, "fail", nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBusy || e.Message != "a reload is in progress" || e.Hint != "wait" {
		t.Errorf("Call(fail) = %#v; want busy error with hint", err)
	}
	if !errors.Is(err, &Error{Code: CodeBusy}) {
		t.Errorf("errors.Is(%v, busy) = false", err)
	}
	if err := Call(ctx, path, "nope", nil, nil); CodeOf(err) != CodeUnknownOp {
		t.Errorf("Call(nope) = %v; want unknown-op", err)
	}
	if err := Call(ctx, path, "oops", nil, nil); CodeOf(err) != CodeInternal || err.Error() != "oops: disk on fire" {
		t.Errorf("Call(oops) = %v; want internal 'oops: disk on fire'", err)
	}
	if err := Call(ctx, path, "panic", nil, nil); CodeOf(err) != CodeInternal {
		t.Errorf("Call(panic) = %v; want internal", err)
	}
	if err := Call(ctx, path, "echo", func() {}, nil); err == nil || !strings.Contains(err.Error(), "echo: encode control frame") {
		t.Errorf("Call(echo, func) = %v; want an encode error at once", err)
	}
	if err := Call(ctx, path, "echo", strings.Repeat("x", DefaultMaxFrameSize), nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Call(echo, 4 MiB) = %v; want ErrFrameTooLarge", err)
	}
	if err := Call(ctx, path, "count", "not a struct", nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("Call(count, bad args) = %v; want bad-request", err)
	}
	// The server survived all of that.
	var s string
	if err := Call(ctx, path, "echo", "still here", &s); err != nil || s != "still here" {
		t.Errorf("Call(echo) after failures = %q, %v", s, err)
	}
}

func TestNotRunning(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "none.sock")
	err := Call(testCtx(t), path, "status", nil, nil)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Call(missing) = %v; want ErrNotRunning", err)
	}
	if want := "connect " + path + ": daemon not running (no such file or directory)"; err.Error() != want {
		t.Errorf("error = %q; want %q", err, want)
	}
	// A stale socket file: bound once, nobody listening now.
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.SetUnlinkOnClose(false)
	srv.unlinkIno = 0
	srv.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket file gone: %v", err)
	}
	if err := Call(testCtx(t), path, "status", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call(stale) = %v; want ErrNotRunning", err)
	}
	// Listen replaces the stale socket.
	srv2, err := Listen(path, Options{})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv2.Close()
}
