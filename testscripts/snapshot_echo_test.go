package testscripts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/zdtools/zd/pkg/snapshot"
)

// examples/echo -state keeps a WebSocket session's counters across a
// reload: the old worker writes its sessions to a .zds snapshot before it
// closes them with 1012, and the new worker finds the session there when the
// client reconnects with the same ?session= id.
func TestEchoSessionStateAcrossReload(t *testing.T) {
	state := filepath.Join(shortDir(t), "state")
	r := startZdRun(t, "--workers", "1", "--", "zd-echo", "-state", state)
	r.waitHealthy()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", r.sock)
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	echo := func(c *websocket.Conn, msg string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo of %q = %q, %v", msg, got, err)
		}
	}
	c, _, err := websocket.Dial(ctx, "ws://zd/ws?session=alice", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	for _, m := range []string{"one", "two", "three"} {
		echo(c, m)
	}
	reloaded := make(chan error, 1)
	go func() {
		if _, stderr, code := r.zdctl("reload"); code != 0 {
			reloaded <- errors.New(stderr)
			return
		}
		reloaded <- nil
	}()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Fatalf("read during reload: %v; want close 1012", err)
	}
	// The snapshot the old worker wrote before the 1012.
	files, _ := filepath.Glob(filepath.Join(state, "echo-*.zds"))
	if len(files) != 1 {
		t.Fatalf("state files %v; want one", files)
	}
	fr, err := snapshot.Open(files[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := fr.Next()
	if err != nil || rec.ID != "alice" || rec.MsgsIn != 3 || rec.State != snapshot.StateClosing || rec.Kind != snapshot.KindWSSession {
		t.Fatalf("snapshot record = %+v, %v; want alice, 3 messages in, closing", rec, err)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the one record: %v; want io.EOF", err)
	}
	fr.Close()
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
	c2, _, err := websocket.Dial(ctx, "ws://zd/ws?session=alice", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("redial: %v", err)
	}
	defer c2.CloseNow()
	echo(c2, "four")
	resp, err := client.Get("http://zd/session?id=alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "session=alice msgs_in=4 msgs_out=4 ") || !strings.Contains(string(body), "state=active") {
		t.Errorf("GET /session?id=alice = %q; want 4 messages each way, active", body)
	}
	c2.Close(websocket.StatusNormalClosure, "")
}

// examples/python-http with APP_STATE_DIR keeps its per-session counts
// across a reload: on SIGTERM it pipes JSON lines into zd-snapshot pack, and
// the new worker reads them back with zd-snapshot unpack.
func TestPythonSessionStateAcrossReload(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	_, file, _, _ := runtime.Caller(0)
	app := filepath.Join(filepath.Dir(file), "..", "examples", "python-http", "app.py")
	state := filepath.Join(shortDir(t), "state")
	t.Setenv("APP_STATE_DIR", state)
	r := startZdRun(t, "--workers", "1", "--", py, app)
	r.waitHealthy()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", r.sock)
	}}}
	count := func() string {
		t.Helper()
		resp, err := client.Get("http://zd/count?session=bob")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := 1; i <= 3; i++ {
		if got := count(); !strings.HasPrefix(got, fmt.Sprintf("session=bob count=%d ", i)) {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	client.CloseIdleConnections()
	if _, stderr, code := r.zdctl("reload"); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, stderr)
	}
	// The old worker wrote its snapshot once drained; wait for it.
	deadline := time.Now().Add(30 * time.Second)
	var rec *snapshot.Record
	for rec == nil {
		files, _ := filepath.Glob(filepath.Join(state, "py-*.zds"))
		for _, f := range files {
			if fr, err := snapshot.Open(f, nil); err == nil {
				rec, _ = fr.Next()
				fr.Close()
			}
		}
		if rec == nil && time.Now().After(deadline) {
			t.Fatalf("no session snapshot in %s after 30s:\n%s", state, r.log())
		}
		if rec == nil {
			time.Sleep(20 * time.Millisecond) // polling a file the app writes: no other signal exists
		}
	}
	if rec.Kind != snapshot.KindAppSession || rec.ID != "bob" || rec.Attrs["count"] != "3" {
		t.Fatalf("snapshot record = %+v; want app-session bob with count 3", rec)
	}
	if got := count(); !strings.HasPrefix(got, "session=bob count=4 ") {
		t.Errorf("after the reload: %q; want count=4 (carried in the snapshot)", got)
	}
}
