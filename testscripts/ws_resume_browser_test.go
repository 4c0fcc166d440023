package testscripts

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWebSocketResumeChromium: headless Chromium loads a page through a
// real zd-queue whose script opens a resumable session with
// examples/websocket-resume/zd-resume.js on the browser's own WebSocket.
// The test resets the page's TCP connections both ways and keeps them down
// until zd-queue saw the drop and the backend sent 100 more messages; the
// browser sees 1006, the helper comes back, and the page gets every
// backend message once and in order, the backend every page message once
// and in order. Then the page asks for a session that never was and sees
// the refusal's Close code, 4404 (a browser cannot read a failed
// handshake's status: without the completed handshake it would see 1006).
// Driven by pkg/proxy/testdata/node/chromium.js (playwright-core).
func TestWebSocketResumeChromium(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install nodejs and run npm ci in pkg/proxy/testdata/node (as .ci/run does)")
	}
	script, _ := filepath.Abs("../pkg/proxy/testdata/node/chromium.js")
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "playwright-core")); err != nil {
		t.Skip("npm package playwright-core missing: run npm ci in pkg/proxy/testdata/node (as .ci/run does)")
	}
	const exe = "/usr/bin/chromium"
	if _, err := os.Stat(exe); err != nil {
		t.Skip("chromium not found at /usr/bin/chromium: install Debian's chromium (as .ci/run does)")
	}
	const pushes, sends = 500, 150
	page, err := os.ReadFile("testdata/resume_page.html")
	if err != nil {
		t.Fatal(err)
	}
	page = bytes.Replace(page, []byte("SENDS_N"), []byte(strconv.Itoa(sends)), 1)
	page = bytes.Replace(page, []byte("EXPECT_N"), []byte(strconv.Itoa(pushes+sends)), 1)
	helper, err := os.ReadFile("../examples/websocket-resume/zd-resume.js")
	if err != nil {
		t.Fatal(err)
	}
	dir := shortDir(t)
	app := startPushApp(t, dir, pushes, 6*time.Millisecond, map[string][]byte{"/": page, "/zd-resume.js": helper})
	q := startQueueProc(t, dir, "q", "--backend", "unix://"+app.sock, "--ws-resume-window", "1m")
	cut := startCutter(t, q.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "http://"+cut.addr()+"/", exe, "150000")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	gone := func() bool {
		select {
		case err := <-exited:
			t.Fatalf("chromium.js ended early (%v): %s %s", err, out.String(), errb.String())
		default:
		}
		return false
	}
	var sid string
	waitCond(t, "the page's session at the backend", 2*time.Minute, func() bool {
		sid = app.session("page")
		return gone() || sid != ""
	})
	waitCond(t, "100 messages to the page", time.Minute, func() bool { return gone() || app.sentTo(sid) >= 100 })
	cut.setHold(true)
	if n := cut.cut(); n == 0 {
		t.Fatal("no connection to cut")
	}
	waitCond(t, "zd-queue to see the drop", time.Minute, func() bool { return gone() || q.metric(t, "zdqueue_ws_sessions_detached") == 1 })
	at := app.sentTo(sid)
	waitCond(t, "100 more while the page is away", time.Minute, func() bool { return gone() || app.sentTo(sid) >= at+100 })
	cut.setHold(false)
	waitCond(t, "the page to resume", time.Minute, func() bool { return gone() || q.metric(t, "zdqueue_ws_resumed_total") == 1 })

	var werr error
	select {
	case werr = <-exited:
	case <-ctx.Done():
		t.Fatalf("chromium.js did not finish: %s", errb.String())
	}
	var res struct {
		Error                  string
		Received, Sent, Echoes int
		Bad                    []string
		Protocol               *string
		Events                 []map[string]any
		Refusal                struct {
			Reason          string
			Code, CloseCode int
		}
	}
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res); err != nil || werr != nil || res.Error != "" {
		t.Fatalf("chromium.js: %v %v %q; stderr %s", werr, err, out.String(), errb.String())
	}
	var evs []string
	for _, e := range res.Events {
		evs = append(evs, e["ev"].(string))
	}
	t.Logf("page: %d backend messages, %d echoes of %d sent; events %v; refusal %+v", res.Received, res.Echoes, res.Sent, evs, res.Refusal)
	if res.Received != pushes+sends || res.Echoes != sends || len(res.Bad) > 0 {
		t.Errorf("page got %d messages (want %d), %d echoes (want %d), out of order or doubled: %v", res.Received, pushes+sends, res.Echoes, sends, res.Bad)
	}
	if !strings.Contains(strings.Join(evs, ","), "open,drop") || !strings.Contains(strings.Join(evs, ","), "resumed") {
		t.Errorf("page events %v; want open, drop(s), resumed", evs)
	}
	var want []string
	for i := range sends {
		want = append(want, "page c"+strconv.Itoa(i))
	}
	if got := app.gotFrom(sid); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the backend got %d messages %v\nwant %d, each once, in order", len(got), got, len(want))
	}
	if res.Refusal.Reason != "unknown" || res.Refusal.Code != 4404 || res.Refusal.CloseCode != 4404 {
		t.Errorf("the page's refusal %+v; want unknown, Close 4404", res.Refusal)
	}
}
