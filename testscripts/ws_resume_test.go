package testscripts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebSocketResumeThroughZdQueue: the JavaScript helper in
// examples/websocket-resume, on npm ws and on Node's own WebSocket, opens
// resumable sessions through a real zd-queue (--ws-resume-window). The
// test kills every client TCP connection twice with a reset while the
// backend keeps pushing numbered messages and the clients keep sending
// theirs: the first time zd-queue sees the drop and the backend sends 100
// more before the clients may come back; the second time they come back at
// once (before or after zd-queue saw it). After each resume every backend
// message arrived once and in order (checked by the driver against the
// backend's numbering), and the backend got every client message once, in
// order (checked here).
func TestWebSocketResumeThroughZdQueue(t *testing.T) {
	const pushes, sends = 600, 200
	d := startResumeDriver(t)
	dir := shortDir(t)
	app := startPushApp(t, dir, pushes, 4*time.Millisecond, nil)
	q := startQueueProc(t, dir, "q", "--backend", "unix://"+app.sock, "--ws-resume-window", "1m")
	cut := startCutter(t, q.addr)

	ids := []string{"w"}
	d.send(map[string]any{"op": "open", "id": "w", "impl": "ws", "url": wsURL(cut.addr()),
		"headers": map[string]string{"Origin": "http://app.test", "Cookie": "sid=42"},
		"send":    map[string]any{"count": sends, "every": 10}, "expect": pushes + sends})
	if d.global {
		ids = append(ids, "g")
		d.send(map[string]any{"op": "open", "id": "g", "impl": "global", "url": wsURL(cut.addr()),
			"protocols": []string{"chat"}, "headers": map[string]string{"Cookie": "sid=43"},
			"send": map[string]any{"count": sends, "every": 10}, "expect": pushes + sends})
	} else {
		t.Log("this node has no WebSocket of its own: only npm ws runs")
	}
	sids := map[string]string{}
	for _, id := range ids {
		o := d.wait(id, "open", 1, time.Minute)
		if o.Window != 60 {
			t.Errorf("%s: open says window %d; want 60", id, o.Window)
		}
		waitCond(t, id+"'s first messages at the backend", time.Minute, func() bool { return app.session(id) != "" })
		sids[id] = app.session(id)
	}
	sentBy := func() map[string]int {
		m := map[string]int{}
		for id, sid := range sids {
			m[id] = app.sentTo(sid)
		}
		return m
	}

	// Cut 1: held down until zd-queue saw the drops and the backend sent
	// 100 more to each session.
	waitCond(t, "100 messages to each session", time.Minute, func() bool {
		for _, n := range sentBy() {
			if n < 100 {
				return false
			}
		}
		return true
	})
	cut.setHold(true)
	if n := cut.cut(); n != len(ids) {
		t.Fatalf("cut %d connections; want %d", n, len(ids))
	}
	waitCond(t, "zd-queue to see the drops", time.Minute, func() bool {
		return q.metric(t, "zdqueue_ws_sessions_detached") == float64(len(ids))
	})
	at := sentBy()
	waitCond(t, "100 more messages while the clients are away", time.Minute, func() bool {
		for id, n := range sentBy() {
			if n < at[id]+100 {
				return false
			}
		}
		return true
	})
	cut.setHold(false)
	for _, id := range ids {
		r := d.wait(id, "resumed", 1, time.Minute)
		t.Logf("%s: resume 1 after %d attempts: have %d of %d sent, replay %d, resent %d", id, len(d.all(id, "drop")), r.Have, r.Sent, r.Replay, r.Resent)
		if r.Replay < 100 {
			t.Errorf("%s: resume 1 replays %d; the backend sent at least 100 while it was away", id, r.Replay)
		}
	}

	// Cut 2: back at once.
	waitCond(t, "more messages after the first resume", time.Minute, func() bool {
		for id, n := range sentBy() {
			if n < at[id]+200 {
				return false
			}
		}
		return true
	})
	if n := cut.cut(); n != len(ids) {
		t.Fatalf("cut %d connections; want %d", n, len(ids))
	}
	for _, id := range ids {
		r := d.wait(id, "resumed", 2, time.Minute)
		t.Logf("%s: resume 2: have %d of %d sent, replay %d, resent %d", id, r.Have, r.Sent, r.Replay, r.Resent)
	}

	for _, id := range ids {
		e := d.wait(id, "done", 1, 3*time.Minute)
		if e.Mismatched != 0 || e.Echoes != sends || e.Received != pushes+sends {
			t.Errorf("%s: received %d (want %d), echoes %d (want %d), %d out of order or doubled: %v",
				id, e.Received, pushes+sends, e.Echoes, sends, e.Mismatched, e.Bad)
		}
		if e.SecretLength != 22 {
			t.Errorf("%s: the helper's secret has %d characters; want 22 (128 bits)", id, e.SecretLength)
		}
		got := app.gotFrom(sids[id])
		var want []string
		for i := range sends {
			want = append(want, fmt.Sprintf("%s c%d", id, i))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: the backend got %d messages %v\nwant %d, each once, in order", id, len(got), got, len(want))
		}
		if g := d.all(id, "gap"); len(g) > 0 {
			t.Errorf("%s: gap events %+v", id, g)
		}
		t.Logf("%s: %d backend messages and %d echoes, each once and in order, through 2 cuts (%d drop events); the backend got all %d client messages once; %d left in the resend queue",
			id, e.Received, e.Echoes, len(d.all(id, "drop")), sends, e.Queued)
	}
	if n := q.metric(t, "zdqueue_ws_resumed_total"); n != float64(2*len(ids)) {
		t.Errorf("zdqueue_ws_resumed_total %v; want %d", n, 2*len(ids))
	}
	for _, id := range ids {
		d.send(map[string]any{"op": "close", "id": id})
		if c := d.wait(id, "close", 1, time.Minute); c.Code != 1000 {
			t.Errorf("%s: closed with %d; want 1000", id, c.Code)
		}
	}
	waitCond(t, "the sessions to end", time.Minute, func() bool { return q.metric(t, "zdqueue_ws_sessions") == 0 })
}

// TestWebSocketResumeRefusals: through a real zd-queue, every refusal the
// docs promise reaches the helper as its Close code, with the answer's
// reason, and a foreign attempt leaves the session to its owner:
// different Cookie or Origin 4403, an unknown secret 4404, a client back
// after the window 4408 (with a gap event), resumption off 4501; a client
// that did not ask sees nothing extra.
func TestWebSocketResumeRefusals(t *testing.T) {
	d := startResumeDriver(t)
	dir := shortDir(t)
	app := startPushApp(t, dir, 100000, 20*time.Millisecond, nil)
	q := startQueueProc(t, dir, "q", "--backend", "unix://"+app.sock, "--ws-resume-window", "1m")
	short := startQueueProc(t, dir, "short", "--backend", "unix://"+app.sock, "--ws-resume-window", "3s")
	off := startQueueProc(t, dir, "off", "--backend", "unix://"+app.sock, "--ws-resume-window", "0")
	cut := startCutter(t, q.addr)
	cutShort := startCutter(t, short.addr)
	owner := map[string]string{"Origin": "http://app.test", "Cookie": "sid=42; theme=dark"}

	refused := func(id, reason string, code int) {
		t.Helper()
		r := d.wait(id, "refused", 1, time.Minute)
		c := d.wait(id, "close", 1, time.Minute)
		if r.Reason != reason || r.Code != code || c.Code != code {
			t.Errorf("%s: refused %q %d, closed %d (%s); want %q %d", id, r.Reason, r.Code, c.Code, r.Detail, reason, code)
		}
	}

	d.send(map[string]any{"op": "open", "id": "a", "impl": "ws", "url": wsURL(cut.addr()), "headers": owner, "reconnect": false})
	d.wait("a", "open", 1, time.Minute)
	d.wait("a", "progress", 1, time.Minute) // 100 messages
	cut.cut()
	d.wait("a", "drop", 1, time.Minute)
	waitCond(t, "zd-queue to see the drop", time.Minute, func() bool { return q.metric(t, "zdqueue_ws_sessions_detached") == 1 })
	out, err := exec.Command("zdctl", "--state-dir", filepath.Join(dir, "q"), "queue", "status").CombinedOutput()
	if !strings.Contains(string(out), "could not move 0; 1 clients away, resumed 0\n") {
		t.Errorf("zdctl queue status (%v):\n%s\nwant its websocket line to end in 1 clients away, resumed 0", err, out)
	}

	d.send(map[string]any{"op": "resume", "id": "cookie", "from": "a", "impl": "ws", "url": wsURL(q.addr),
		"headers": map[string]string{"Origin": "http://app.test", "Cookie": "sid=43; theme=dark"}})
	refused("cookie", "credentials", 4403)
	d.send(map[string]any{"op": "resume", "id": "origin", "from": "a", "impl": "ws", "url": wsURL(q.addr),
		"headers": map[string]string{"Origin": "http://evil.test", "Cookie": "sid=42; theme=dark"}})
	refused("origin", "credentials", 4403)
	if len(d.all("origin", "gap")) != 1 {
		t.Errorf("a refused resume gave gap events %+v; want one to-client", d.all("origin", "gap"))
	}
	var b [16]byte
	rand.Read(b[:])
	d.send(map[string]any{"op": "resume", "id": "unknown", "impl": "ws", "url": wsURL(q.addr), "headers": owner,
		"secret": base64.RawURLEncoding.EncodeToString(b[:])})
	refused("unknown", "unknown", 4404)
	if n := q.metric(t, "zdqueue_ws_sessions_detached"); n != 1 {
		t.Fatalf("after the foreign resumes %v sessions detached; want the owner's still waiting", n)
	}

	// The owner comes back: the session is whole.
	before := len(d.all("a", "progress"))
	d.send(map[string]any{"op": "reconnect", "id": "a"})
	r := d.wait("a", "resumed", 1, time.Minute)
	d.wait("a", "progress", before+1, time.Minute)
	if l := d.all("a", "done"); len(l) > 0 || len(d.all("a", "gap")) > 0 {
		t.Errorf("owner: events %v %v", l, d.all("a", "gap"))
	}
	t.Logf("owner back after 3 foreign attempts: replay %d", r.Replay)
	for _, reason := range []string{"credentials", "unknown"} {
		want := map[string]float64{"credentials": 2, "unknown": 1}[reason]
		if n := q.metric(t, `zdqueue_ws_resume_refused_total{reason="`+reason+`"}`); n != want {
			t.Errorf("zdqueue_ws_resume_refused_total{reason=%q} %v; want %v", reason, n, want)
		}
	}

	// The helper's own bound: a resend queue of 5 while 30 messages wait
	// for the connection; the resume's answer says zd-queue lacks some it
	// forgot: a gap event to-backend, with how many.
	d.send(map[string]any{"op": "open", "id": "qb", "impl": "ws", "url": wsURL(cut.addr()), "headers": owner, "reconnect": false, "maxQueued": 5})
	d.wait("qb", "open", 1, time.Minute)
	cut.cut()
	d.wait("qb", "drop", 1, time.Minute)
	d.send(map[string]any{"op": "send", "id": "qb", "count": 30})
	if s := d.wait("qb", "sent", 1, time.Minute); s.Sent != 30 || s.Queued != 5 {
		t.Errorf("helper sent %d, queued %d; want 30, 5", s.Sent, s.Queued)
	}
	d.send(map[string]any{"op": "reconnect", "id": "qb"})
	d.wait("qb", "resumed", 1, time.Minute)
	if g := d.all("qb", "gap"); len(g) != 1 || g[0].Direction != "to-backend" || g[0].Lost != 25 {
		t.Errorf("gap events %+v; want one to-backend, 25 lost", g)
	}
	waitCond(t, "the 5 kept messages at the backend", time.Minute, func() bool { return len(app.gotFrom(app.session("qb"))) == 5 })
	if got := app.gotFrom(app.session("qb")); strings.Join(got, ",") != "qb c25,qb c26,qb c27,qb c28,qb c29" {
		t.Errorf("the backend got %v; want the 5 the helper kept", got)
	}
	d.send(map[string]any{"op": "close", "id": "qb"})
	d.wait("qb", "close", 1, time.Minute)

	// Expired: away longer than a 3 s window (and back within the 3 s its
	// end is remembered: later it would be unknown).
	d.send(map[string]any{"op": "open", "id": "e", "impl": "ws", "url": wsURL(cutShort.addr()), "headers": owner, "reconnect": false})
	if o := d.wait("e", "open", 1, time.Minute); o.Window != 3 {
		t.Errorf("open says window %d; want 3", o.Window)
	}
	cutShort.cut()
	d.wait("e", "drop", 1, time.Minute)
	waitCond(t, "the window to pass", time.Minute, func() bool {
		return q.metric(t, "zdqueue_ws_sessions") == 1 && short.metric(t, "zdqueue_ws_sessions") == 0 &&
			short.metric(t, `zdqueue_ws_closes_total{code="1006",reason="resume-expired"}`) == 1
	})
	d.send(map[string]any{"op": "reconnect", "id": "e"})
	refused("e", "expired", 4408)
	if g := d.all("e", "gap"); len(g) != 1 || g[0].Direction != "to-client" {
		t.Errorf("expired: gap events %+v; want one to-client", g)
	}

	// Off: --ws-resume-window 0.
	d.send(map[string]any{"op": "open", "id": "off", "impl": "ws", "url": wsURL(off.addr), "headers": owner})
	refused("off", "off", 4501)
	if g := d.all("off", "gap"); len(g) != 0 {
		t.Errorf("a refused new session gave gap events %+v", g)
	}

	// A client that did not ask sees the backend's first message first,
	// and no zd-resume field.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, resp, err := (&websocket.Dialer{Subprotocols: []string{"chat"}}).DialContext(ctx, wsURL(q.addr), http.Header{"Origin": {"http://app.test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "chat" || resp.Header.Get("Zd-Resume-Refused") != "" {
		t.Errorf("plain handshake answer %v", resp.Header)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "s0 push" {
		t.Errorf("a plain client's first message %q, %v; want the backend's s0 push", m, err)
	}
	d.send(map[string]any{"op": "close", "id": "a"})
	d.wait("a", "close", 1, time.Minute)
}
