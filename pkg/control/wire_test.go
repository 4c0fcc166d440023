package control

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
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
