package testscripts

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zdtools/zd/internal/h2wsclient"
	"github.com/zdtools/zd/internal/h3wsclient"
)

// TestWebSocketResumeAcrossTransports is issue #11's resumption acceptance:
// two clients on HTTP/2 (RFC 8441, over TLS) are cut (their TCP connection
// reset both ways while messages are in flight) and come back to their
// sessions with their secret and count, one over HTTP/3 (RFC 9220) and one
// over HTTP/1.1, with the same Origin, Cookie and Authorization. The
// backend pushes numbered messages all along (100 more while they are
// away): each client gets every one once and in order, and the backend
// gets every client message once and in order. Before they come back,
// resumes with another Cookie (over HTTP/3), another Origin (HTTP/1.1), no
// Authorization (HTTP/2) get the answer and Close 4403, and unknown secrets
// over HTTP/2 and HTTP/3 4404, and leave the sessions waiting. The clients are
// coder/websocket on x/net's HTTP/2 client, on quic-go's HTTP/3 client and
// on net/http, independent of zd-queue's relay.
func TestWebSocketResumeAcrossTransports(t *testing.T) {
	const pushes, perLeg = 500, 40
	dir := shortDir(t)
	app := startPushApp(t, dir, pushes, 4*time.Millisecond, nil)
	cert, key, roots := writeCert(t)
	q := startQueueProc(t, dir, "q", "--backend", "unix://"+app.sock, "--ws-resume-window", "1m",
		"--tls-cert", cert, "--tls-key", key, "--listen-h3", "127.0.0.1:0")
	var tcpAddr, udpAddr string
	for _, a := range strings.Split(q.addr, ",") {
		if u, ok := strings.CutPrefix(a, "udp/"); ok {
			udpAddr = u
		} else {
			tcpAddr = a
		}
	}
	if tcpAddr == "" || udpAddr == "" {
		t.Fatalf("zd-queue listens on %q; want a TCP and a UDP address", q.addr)
	}
	cut := startCutter(t, tcpAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hdr := http.Header{"Origin": {"https://app.test"}, "Cookie": {"sid=42; theme=dark"}, "Authorization": {"Bearer t0k3n"}}
	tlsc := &tls.Config{RootCAs: roots}

	type dialFunc = func(context.Context, []string) (*websocket.Conn, error)
	dialers := func(hdr http.Header) (h1, h2, h3 dialFunc) {
		h2 = func(ctx context.Context, protos []string) (*websocket.Conn, error) {
			c, err := h2wsclient.Dial(ctx, cut.addr(), "/ws", h2wsclient.Options{TLS: tlsc,
				WS: &websocket.DialOptions{Subprotocols: protos, HTTPHeader: hdr}})
			if err != nil {
				return nil, err
			}
			return c.Conn, nil
		}
		h3 = func(ctx context.Context, protos []string) (*websocket.Conn, error) {
			c, err := h3wsclient.Dial(ctx, udpAddr, "/ws", h3wsclient.Options{TLS: tlsc,
				WS: &websocket.DialOptions{Subprotocols: protos, HTTPHeader: hdr}})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { c.CloseQUIC() })
			return c.Conn, nil
		}
		h1 = func(ctx context.Context, protos []string) (*websocket.Conn, error) {
			c, _, err := websocket.Dial(ctx, "wss://"+cut.addr()+"/ws", &websocket.DialOptions{Subprotocols: protos, HTTPHeader: hdr,
				HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsc}}})
			return c, err
		}
		return h1, h2, h3
	}
	h1, h2, h3 := dialers(hdr)
	// refused checks a refusal over dial: the answer, then the Close code.
	refused := func(what string, dial dialFunc, tok, reason string, code websocket.StatusCode) {
		t.Helper()
		c, err := dial(ctx, []string{"chat", tok})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer c.CloseNow()
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, data, err := c.Read(rctx)
		var a xAnswer
		if err == nil {
			err = json.Unmarshal(data, &a)
		}
		if err != nil || a.Status != "refused" || a.Reason != reason {
			t.Errorf("%s: answer %q (%v); want refused %s", what, data, err, reason)
		}
		_, _, err = c.Read(rctx)
		if got := websocket.CloseStatus(err); got != code {
			t.Errorf("%s: then %v; want Close %d", what, err, code)
		}
	}

	clients := []*xClient{{name: "to-h3", back: h3}, {name: "to-h1", back: h1}}
	for _, x := range clients {
		x.secret = newResumeSecret()
		if _, err := x.connect(ctx, h2, false); err != nil {
			t.Fatalf("%s: open over HTTP/2: %v", x.name, err)
		}
		if err := x.send(ctx); err != nil {
			t.Fatal(err)
		}
		waitCond(t, x.name+"'s first message at the backend", time.Minute, func() bool {
			x.sid = app.session(x.name)
			return x.sid != ""
		})
	}
	if st := queueProtocols(t, q); st["h2"] != 2 {
		t.Errorf("zd-queue counts sessions by protocol %v; want h2: 2", st)
	}
	// A leg: messages out without waiting for their echoes, so some are
	// in flight when the connection goes.
	leg := func(x *xClient) {
		for i := 0; i < perLeg; i++ {
			if err := x.send(ctx); err != nil {
				t.Fatalf("%s: %v", x.name, err)
			}
			if i%3 == 0 {
				if err := x.take(ctx); err != nil {
					t.Fatalf("%s: %v", x.name, err)
				}
			}
		}
	}
	for _, x := range clients {
		leg(x)
	}
	// Cut while both write as fast as they can: what they wrote last is in
	// their buffers or on the wire, not read by zd-queue.
	var wg sync.WaitGroup
	var burst [2]atomic.Int32
	for i, x := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for range 100_000 {
				if x.send(wctx) != nil {
					return
				}
				burst[i].Add(1)
			}
		}()
	}
	waitCond(t, "both clients writing", time.Minute, func() bool { return burst[0].Load() >= 200 && burst[1].Load() >= 200 })
	if n := cut.cut(); n != 2 {
		t.Fatalf("cut %d TCP connections; want the 2 HTTP/2 ones", n)
	}
	wg.Wait()
	waitCond(t, "zd-queue to see both drops", time.Minute, func() bool { return q.metric(t, "zdqueue_ws_sessions_detached") == 2 })
	for _, x := range clients {
		at := app.sentTo(x.sid)
		waitCond(t, "100 messages to "+x.name+" while it is away", time.Minute, func() bool { return app.sentTo(x.sid) >= at+100 })
	}
	// Foreign and unknown resumes, over each transport, leave the sessions
	// to their owners.
	foreignCookie := http.Header{"Origin": hdr["Origin"], "Cookie": {"sid=43; theme=dark"}, "Authorization": hdr["Authorization"]}
	foreignOrigin := http.Header{"Origin": {"https://evil.test"}, "Cookie": hdr["Cookie"], "Authorization": hdr["Authorization"]}
	noAuth := http.Header{"Origin": hdr["Origin"], "Cookie": hdr["Cookie"]}
	tok := func(x *xClient) string { return "zd-resume." + x.secret + "." + strconv.Itoa(x.received) }
	_, _, fc3 := dialers(foreignCookie)
	fo1, _, _ := dialers(foreignOrigin)
	_, na2, _ := dialers(noAuth)
	refused("other Cookie over HTTP/3", fc3, tok(clients[0]), "credentials", 4403)
	refused("other Origin over HTTP/1.1", fo1, tok(clients[1]), "credentials", 4403)
	refused("no Authorization over HTTP/2", na2, tok(clients[0]), "credentials", 4403)
	refused("unknown secret over HTTP/2", h2, "zd-resume."+newResumeSecret()+".0", "unknown", 4404)
	refused("unknown secret over HTTP/3", h3, "zd-resume."+newResumeSecret()+".0", "unknown", 4404)
	if n := q.metric(t, "zdqueue_ws_sessions_detached"); n != 2 {
		t.Fatalf("after the foreign resumes %v sessions wait; want both", n)
	}
	for _, x := range clients {
		x.c.CloseNow()
		a, err := x.connect(ctx, x.back, true)
		if err != nil {
			t.Fatalf("%s: resume: %v", x.name, err)
		}
		t.Logf("%s: resumed: had %d backend messages, zd-queue had %d of its %d, replay %d", x.name, x.received, a.Have, len(x.sent), a.Replay)
		if a.Replay < 100 {
			t.Errorf("%s: replay %d; the backend sent at least 100 while it was away", x.name, a.Replay)
		}
	}
	if st := queueProtocols(t, q); st["h2"] != 2 {
		t.Logf("sessions by protocol after the resumes: %v (counted by the transport they opened on)", st)
	}
	for _, x := range clients {
		leg(x)
	}
	for _, x := range clients {
		want := pushes + len(x.sent)
		waitCond(t, "the backend's pushes to "+x.name, 2*time.Minute, func() bool { return app.sentTo(x.sid) == want })
		for x.received < want {
			if err := x.take(ctx); err != nil {
				t.Fatalf("%s: after %d of %d: %v", x.name, x.received, want, err)
			}
		}
		if strings.Join(x.echoes, ",") != strings.Join(x.sent, ",") {
			t.Errorf("%s: echoes %v\nwant %v", x.name, x.echoes, x.sent)
		}
		if got := app.gotFrom(x.sid); strings.Join(got, ",") != strings.Join(x.sent, ",") {
			t.Errorf("%s: the backend got %d messages %v\nwant %d, each once, in order", x.name, len(got), got, len(x.sent))
		}
		t.Logf("%s: %d backend messages, each once and in order; the backend got all %d client messages once, in order", x.name, x.received, len(x.sent))
		x.c.Close(websocket.StatusNormalClosure, "done")
	}
	waitCond(t, "the sessions to end", time.Minute, func() bool { return q.metric(t, "zdqueue_ws_sessions") == 0 })
	if n := q.metric(t, "zdqueue_ws_resumed_total"); n != 2 {
		t.Errorf("zdqueue_ws_resumed_total %v; want 2", n)
	}
}

// xClient is a client of the resumption contract on coder/websocket,
// over whichever transport a dial function gives: it numbers what it
// sends, keeps all of it (a test is short), counts what it received and
// checks the backend's numbering.
type xClient struct {
	name, secret, sid string
	back              func(context.Context, []string) (*websocket.Conn, error) // the transport it comes back over

	c        *websocket.Conn
	sent     []string
	received int
	echoes   []string
}

type xAnswer struct {
	Status       string `json:"zd-resume"`
	Have, Replay int
	Reason       string
}

func newResumeSecret() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (x *xClient) connect(ctx context.Context, dial func(context.Context, []string) (*websocket.Conn, error), resume bool) (xAnswer, error) {
	tok := "zd-resume." + x.secret
	want := "new"
	if resume {
		tok += "." + strconv.Itoa(x.received)
		want = "resumed"
	}
	c, err := dial(ctx, []string{"chat", tok})
	if err != nil {
		return xAnswer{}, err
	}
	if c.Subprotocol() != "chat" {
		return xAnswer{}, fmt.Errorf("subprotocol %q; want chat", c.Subprotocol())
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, data, err := c.Read(rctx)
	var a xAnswer
	if err == nil {
		err = json.Unmarshal(data, &a)
	}
	if err != nil || a.Status != want || a.Have > len(x.sent) {
		c.CloseNow()
		return a, fmt.Errorf("answer %q (%v); want %s with at most %d", data, err, want, len(x.sent))
	}
	x.c = c
	for _, m := range x.sent[a.Have:] {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			return a, err
		}
	}
	return a, nil
}

func (x *xClient) send(ctx context.Context) error {
	m := fmt.Sprintf("%s c%d", x.name, len(x.sent))
	x.sent = append(x.sent, m)
	return x.c.Write(ctx, websocket.MessageText, []byte(m))
}

// take reads one backend message and checks it is the next in number.
func (x *xClient) take(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, data, err := x.c.Read(rctx)
	if err != nil {
		return err
	}
	num, rest, _ := strings.Cut(string(data), " ")
	if want := "s" + strconv.Itoa(x.received); num != want {
		return fmt.Errorf("message %q; want number %s", data, want)
	}
	x.received++
	if e, ok := strings.CutPrefix(rest, "echo "); ok {
		x.echoes = append(x.echoes, e)
	}
	return nil
}

// queueProtocols is /_zero-downtime/status's websocket.protocols.
func queueProtocols(t *testing.T, q *queueProc) map[string]int {
	t.Helper()
	out, err := adminGet(q.admin, "/_zero-downtime/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		WebSocket struct{ Protocols map[string]int } `json:"websocket"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status %q: %v", out, err)
	}
	return st.WebSocket.Protocols
}
