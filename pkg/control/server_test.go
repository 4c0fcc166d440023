package control

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// rawExchange writes b on a fresh connection and returns the one reply
// frame the server sends, then checks that the server hangs up.
func rawExchange(t *testing.T, path string, b []byte) responseIn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
	var in responseIn
	if err := ReadFrame(c, 0, &in); err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	if err := ReadFrame(c, 0, &struct{}{}); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("after the error reply: %v; want the server to hang up", err)
	}
	return in
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "unexpected EOF"))
}

func frame(body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	return append(b, body...)
}

func mp(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestBadFrames(t *testing.T) {
	_, path := startServer(t, Options{MaxFrameSize: 1024, ReadTimeout: 200 * time.Millisecond})
	tests := []struct {
		name string
		in   []byte
		code string
		msg  string
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), CodeBadRequest, "too large"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, CodeBadRequest, "too large"},
		{"just over the limit", frame(make([]byte, 1025)), CodeBadRequest, "1025 bytes, limit 1024"},
		{"empty body", frame(nil), CodeBadRequest, "empty body"},
		{"not a map", frame(mp([]int{1, 2})), CodeBadRequest, "not a msgpack map"},
		{"bad msgpack", frame([]byte{0x81, 0xc1}), CodeBadRequest, "truncated"},
		{"invalid byte", frame([]byte{0x81, 0xa1, 0x76, 0xc1}), CodeBadRequest, "invalid byte 0xc1"},
		{"deep nesting", frame(append([]byte{0x82, 0xa1, 0x76, 0x01, 0xa4, 0x61, 0x72, 0x67, 0x73}, append(bytes.Repeat([]byte{0x91}, 1000), 0xc0)...)), CodeBadRequest, "nested more than 32 deep"},
		{"huge declared array", frame([]byte{0x81, 0xa1, 0x76, 0xdd, 0xff, 0xff, 0xff, 0xff}), CodeBadRequest, "truncated"},
		{"trailing bytes", frame(append(mp(map[string]any{"v": 1, "op": "echo"}), 0xc0)), CodeBadRequest, "1 bytes after the value"},
		{"no version", frame(mp(map[string]any{"op": "echo"})), CodeBadRequest, "without protocol version"},
		{"wrong version", frame(mp(map[string]any{"v": 2, "op": "echo"})), CodeVersionMismatch, "version 2 is not supported"},
		{"future request shape", frame(mp(map[string]any{"v": 2, "op": map[string]any{"name": "status"}})), CodeVersionMismatch, "version 2 is not supported"},
		{"no op", frame(mp(map[string]any{"v": 1})), CodeBadRequest, "without op"},
		{"op not a string", frame(mp(map[string]any{"v": 1, "op": 7})), CodeBadRequest, "decode"},
		{"nil time", frame(mp(map[string]any{"v": 1, "op": nil})), CodeBadRequest, "without op"},
		{"truncated body", frame(mp(map[string]any{"v": 1, "op": "echo"}))[:8], CodeBadRequest, "unexpected EOF"},
		{"truncated header", []byte{0, 0}, CodeBadRequest, "unexpected EOF"},
		{"silent client", nil, CodeBadRequest, "i/o timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in responseIn
			if strings.HasPrefix(tt.name, "truncated") || tt.name == "silent client" {
				in = halfExchange(t, path, tt.in)
			} else {
				in = rawExchange(t, path, tt.in)
			}
			if in.V == nil || *in.V != ProtocolVersion || in.OK == nil || *in.OK || in.Error == nil {
				t.Fatalf("reply = %+v; want a v1 error reply", in)
			}
			if in.Error.Code != tt.code || !strings.Contains(in.Error.Message, tt.msg) || in.Error.Hint == "" {
				t.Errorf("error = %+v; want code %s, message containing %q, and a hint", in.Error, tt.code, tt.msg)
			}
		})
	}
	// The server is unaffected.
	var s string
	if err := Call(testCtx(t), path, "echo", "ok", &s); err != nil || s != "ok" {
		t.Errorf("Call after bad frames = %q, %v", s, err)
	}
}

// halfExchange writes b, half-closes (the client's request ends there) or
// stays silent, and returns the reply.
func halfExchange(t *testing.T, path string, b []byte) responseIn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if len(b) > 0 {
		c.Write(b)
		c.(*net.UnixConn).CloseWrite()
	}
	var in responseIn
	if err := ReadFrame(c, 0, &in); err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	return in
}

func TestVersionMismatchFromServer(t *testing.T) {
	path := filepath.Join(sockDir(t), "old.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var req requestIn
		ReadFrame(c, 0, &req)
		WriteFrame(c, map[string]any{"v": 9, "ok": "a string now"})
	}()
	err = Call(testCtx(t), path, "status", nil, nil)
	wg.Wait()
	if CodeOf(err) != CodeVersionMismatch || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("Call to a v9 server = %v; want version-mismatch naming 9", err)
	}
}

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

// runClientAs calls "echo" on path from a child process with the given
// setpriv arguments, and returns what the child printed.
func runClientAs(t *testing.T, path string, privArgs ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(privArgs, exe, "-test.run=^$", path)
	cmd := exec.Command(setpriv, args...)
	cmd.Env = append(os.Environ(), "ZD_CONTROL_CHILD=call")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func TestPeerCredentials(t *testing.T) {
	dir := sockDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(context.Background(), testHandler)
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}

	// The socket file (0600) keeps uid 65534 out before SO_PEERCRED.
	out := runClientAs(t, path, nobody...)
	if out != "code permission-denied: connect "+path+": permission denied" {
		t.Errorf("child through a 0600 socket: %q; want permission-denied at connect", out)
	}
	// With the file opened up, SO_PEERCRED refuses it.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	out = runClientAs(t, path, nobody...)
	if out != "code permission-denied: uid 65534 may not use "+path {
		t.Errorf("child with another uid: %q; want refused by SO_PEERCRED", out)
	}
	// The server keeps serving its own user.
	var s string
	if err := Call(testCtx(t), path, "echo", "me", &s); err != nil || s != "me" {
		t.Errorf("Call after a refused peer = %q, %v", s, err)
	}

	// AllowGIDs lets a group in, by primary or supplementary gid.
	p2 := filepath.Join(dir, "g.sock")
	s2, err := Listen(p2, Options{AllowGIDs: []int{4242}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	go s2.Serve(context.Background(), testHandler)
	os.Chmod(p2, 0o666)
	if out := runClientAs(t, p2, "--reuid=65534", "--regid=4242", "--clear-groups"); out != "ok hi" {
		t.Errorf("child with allowed primary gid: %q; want ok hi", out)
	}
	if out := runClientAs(t, p2, "--reuid=65534", "--regid=65534", "--groups=4242"); out != "ok hi" {
		t.Errorf("child with allowed supplementary gid: %q; want ok hi", out)
	}
	if out := runClientAs(t, p2, nobody...); !strings.HasPrefix(out, "code permission-denied: uid 65534 may not use") {
		t.Errorf("child without the gid: %q; want refused", out)
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

// TestWireFormat pins the frames a non-Go client sees: each one a map with
// exactly these keys.
func TestWireFormat(t *testing.T) {
	_, path := startServer(t, Options{})
	exchange := func(req map[string]any) []map[string]any {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write(frame(mp(req)))
		var frames []map[string]any
		for i := 0; i < 100; i++ {
			var m map[string]any
			if err := ReadFrame(c, 0, &m); err != nil {
				break
			}
			frames = append(frames, m)
		}
		return frames
	}
	keys := func(m map[string]any) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	fs := exchange(map[string]any{"v": 1, "op": "count", "args": map[string]any{"text": "end", "count": 2}})
	if len(fs) != 3 {
		t.Fatalf("got %d frames; want 2 events and a reply: %v", len(fs), fs)
	}
	for _, ev := range fs[:2] {
		if keys(ev) != "event,v" {
			t.Errorf("event frame keys %q; want event,v", keys(ev))
		}
	}
	if keys(fs[2]) != "ok,result,v" || fs[2]["ok"] != true || fs[2]["result"] != "end" {
		t.Errorf("reply frame %v; want {v, ok: true, result: end}", fs[2])
	}
	fs = exchange(map[string]any{"v": 1, "op": "fail"})
	if len(fs) != 1 || keys(fs[0]) != "error,ok,v" || fs[0]["ok"] != false {
		t.Fatalf("error reply %v; want {v, ok: false, error}", fs)
	}
	if e, _ := fs[0]["error"].(map[string]any); keys(e) != "code,hint,message" || e["code"] != "busy" {
		t.Errorf("error object %v; want {code, message, hint}", fs[0]["error"])
	}
	fs = exchange(map[string]any{"v": 1, "op": "echo"})
	if len(fs) != 1 || keys(fs[0]) != "ok,v" {
		t.Errorf("reply without result %v; want {v, ok}", fs)
	}
}

// TestHalfClose: a client that shuts down writing after its request (as
// `socat` or a shell script may) still gets its events and reply.
func TestHalfClose(t *testing.T) {
	_, path := startServer(t, Options{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write(frame(mp(map[string]any{"v": 1, "op": "count", "args": map[string]any{"text": "end", "count": 3}})))
	c.(*net.UnixConn).CloseWrite()
	var n int
	for ; n < 10; n++ {
		var in responseIn
		if err := ReadFrame(c, 0, &in); err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if in.Event == nil {
			if in.OK == nil || !*in.OK {
				t.Fatalf("reply %+v; want ok", in)
			}
			break
		}
	}
	if n != 3 {
		t.Errorf("got %d events before the reply; want 3", n)
	}
}
