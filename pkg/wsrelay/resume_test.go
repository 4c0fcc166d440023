package wsrelay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

// pushBackend is a backend that numbers every message it sends ("s<k>
// ..."): it pushes "s<k> push" on its own, up to pushes of them, and
// answers each client message m with "s<k> echo m". It records what it
// got from each session, to check nothing was lost or doubled.
type pushBackend struct {
	ln     net.Listener
	srv    *http.Server
	pushes int
	every  time.Duration

	mu     sync.Mutex
	got    map[string][]string // by Zd-Session-Id: client messages in arrival order
	sent   map[string]int      // by Zd-Session-Id: messages sent
	closes map[string]int      // by Zd-Session-Id: close code seen (-1: dropped)
}

func startPush(t testing.TB, pushes int, every time.Duration) *pushBackend {
	t.Helper()
	b := &pushBackend{pushes: pushes, every: every, got: map[string][]string{}, sent: map[string]int{}, closes: map[string]int{}}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "push.sock"))
	if err != nil {
		t.Fatal(err)
	}
	b.ln = ln
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve)}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *pushBackend) dial(ctx context.Context) (net.Conn, string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", b.ln.Addr().String())
	return c, "push", err
}

func (b *pushBackend) serve(w http.ResponseWriter, r *http.Request) {
	c, err := coder.Accept(w, r, &coder.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{"chat"}})
	if err != nil {
		return
	}
	sid := r.Header.Get("Zd-Session-Id")
	b.mu.Lock()
	b.sent[sid] += 0
	b.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wmu sync.Mutex
	send := func(what string) error {
		wmu.Lock()
		defer wmu.Unlock()
		b.mu.Lock()
		k := b.sent[sid]
		b.sent[sid]++
		b.mu.Unlock()
		return c.Write(ctx, coder.MessageText, []byte("s"+strconv.Itoa(k)+" "+what))
	}
	go func() {
		t := time.NewTicker(b.every)
		defer t.Stop()
		for i := 0; i < b.pushes; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if send("push") != nil {
				return
			}
		}
	}()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			b.mu.Lock()
			b.closes[sid] = int(coder.CloseStatus(err))
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		b.got[sid] = append(b.got[sid], string(data))
		b.mu.Unlock()
		if send("echo "+string(data)) != nil {
			return
		}
	}
}

func (b *pushBackend) sentTo(sid string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[sid]
}

func (b *pushBackend) onlySession(t testing.TB) string {
	t.Helper()
	// The relay has the backend's 101 before the backend's handler went on
	// to record the session.
	waitFor(t, "the backend to record the session", 10*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.sent) > 0
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sent) != 1 {
		t.Fatalf("backend has %d sessions; want 1", len(b.sent))
	}
	for sid := range b.sent {
		return sid
	}
	return ""
}

func newSecret() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

type resumeAnswer struct {
	Status string `json:"zd-resume"`
	Have   uint64 `json:"have"`
	Replay uint64 `json:"replay"`
	Window int64  `json:"window"`
	Reason string `json:"reason"`
	Code   int    `json:"code"`
	Closed int    `json:"closed"`
	Detail string `json:"detail"`
}

// dialResume connects with the zd-resume token tok (and "chat") and
// reads the answer.
func dialResume(ctx context.Context, url, tok string, h http.Header) (*websocket.Conn, *http.Response, resumeAnswer, error) {
	if h == nil {
		h = http.Header{"Origin": {"http://app.test"}, "Cookie": {"sid=42"}}
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"chat", tok}}
	c, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		return nil, resp, resumeAnswer{}, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, resp, resumeAnswer{}, fmt.Errorf("read the answer: %v", err)
	}
	var a resumeAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		c.Close()
		return nil, resp, a, fmt.Errorf("answer %q: %v", data, err)
	}
	return c, resp, a, nil
}

// cut kills a client's TCP connection with a reset, as a network that
// drops does, without a Close.
func cut(c *websocket.Conn) {
	if tc, ok := c.NetConn().(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.NetConn().Close()
}

// resumingClient is a client of the contract, independent of the relay's
// code: it numbers what it sends, keeps what zd-queue may not have, counts
// what it received and checks the backend's numbering.
type resumingClient struct {
	url    string
	secret string
	h      http.Header

	sent     []string // every message, in order
	received uint64   // backend messages taken (answers not counted)
	echoes   []string // client messages the backend echoed, in order
	c        *websocket.Conn
}

func (rc *resumingClient) connect(ctx context.Context, resume bool) (resumeAnswer, error) {
	tok := "zd-resume." + rc.secret
	if resume {
		tok += "." + strconv.FormatUint(rc.received, 10)
	}
	c, _, a, err := dialResume(ctx, rc.url, tok, rc.h)
	if err != nil {
		return a, err
	}
	rc.c = c
	want := "new"
	if resume {
		want = "resumed"
	}
	if a.Status != want {
		return a, fmt.Errorf("answer %+v; want %s", a, want)
	}
	if a.Have > uint64(len(rc.sent)) {
		return a, fmt.Errorf("zd-queue has %d of our messages; we sent %d", a.Have, len(rc.sent))
	}
	for _, m := range rc.sent[a.Have:] {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			return a, err
		}
	}
	return a, nil
}

func (rc *resumingClient) send(m string) error {
	rc.sent = append(rc.sent, m)
	return rc.c.WriteMessage(websocket.TextMessage, []byte(m))
}

// take reads one backend message and checks it is the next in number.
func (rc *resumingClient) take() error {
	rc.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	_, data, err := rc.c.ReadMessage()
	if err != nil {
		return err
	}
	num, rest, _ := strings.Cut(string(data), " ")
	if want := "s" + strconv.FormatUint(rc.received, 10); num != want {
		return fmt.Errorf("message %q; want number %s", data, want)
	}
	rc.received++
	if e, ok := strings.CutPrefix(rest, "echo "); ok {
		rc.echoes = append(rc.echoes, e)
	}
	return nil
}

// TestResumeKeepsEveryMessage: a client whose TCP connection is reset
// three times comes back each time with its secret and count, gets every
// backend message it missed once and in order, and resends only what
// zd-queue did not have: the backend gets each client message once.
func TestResumeKeepsEveryMessage(t *testing.T) {
	const pushes, perLeg, legs = 400, 60, 4
	pb := startPush(t, pushes, 2*time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rc := &resumingClient{url: url + "/ws", secret: newSecret()}
	a, err := rc.connect(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if a.Window != 60 {
		t.Errorf("answer window %d; want 60", a.Window)
	}
	sid := pb.onlySession(t)
	n := 0
	for leg := 0; leg < legs; leg++ {
		// Send a leg's messages without waiting for their echoes, so some
		// are in flight when the connection is cut.
		for i := 0; i < perLeg; i++ {
			if err := rc.send("c" + strconv.Itoa(n)); err != nil {
				t.Fatal(err)
			}
			n++
			if i%3 == 0 {
				if err := rc.take(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if leg == legs-1 {
			break
		}
		cut(rc.c)
		waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
		before := pb.sentTo(sid)
		waitFor(t, "the backend to send while the client is away", 30*time.Second, func() bool { return pb.sentTo(sid) >= before+20 })
		a, err := rc.connect(ctx, true)
		if err != nil {
			t.Fatalf("resume %d: %v", leg+1, err)
		}
		t.Logf("resume %d: have %d of %d sent, replay %d", leg+1, a.Have, len(rc.sent), a.Replay)
		if a.Replay < 20 {
			t.Errorf("resume %d replays %d messages; the backend sent at least 20 while the client was away", leg+1, a.Replay)
		}
	}
	// Every echo comes back, then the rest of the pushes.
	waitFor(t, "the backend to push all", 60*time.Second, func() bool { return pb.sentTo(sid) == pushes+n })
	for rc.received < uint64(pushes+n) {
		if err := rc.take(); err != nil {
			t.Fatalf("after %d messages: %v", rc.received, err)
		}
	}
	if strings.Join(rc.echoes, ",") != strings.Join(rc.sent, ",") {
		t.Errorf("echoes %v\nwant %v", rc.echoes, rc.sent)
	}
	pb.mu.Lock()
	got := strings.Join(pb.got[sid], ",")
	pb.mu.Unlock()
	if got != strings.Join(rc.sent, ",") {
		t.Errorf("backend got %v\nwant %v", got, rc.sent)
	}
	rc.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(5*time.Second))
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
	st := r.Stats()
	if st.Resumed != legs-1 || st.Detached != 0 || st.ReplayHeldBytes != 0 {
		t.Errorf("Stats: resumed %d, detached %d, replay held %d; want %d, 0, 0", st.Resumed, st.Detached, st.ReplayHeldBytes, legs-1)
	}
}

// TestResumeRefusals: every way a resume can fail gets its answer and
// Close code, and a foreign attempt leaves the session to its owner.
func TestResumeRefusals(t *testing.T) {
	pb := startPush(t, 1000, 5*time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute}, nil)
	url += "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	refused := func(tok string, h http.Header, reason string) resumeAnswer {
		t.Helper()
		c, resp, a, err := dialResume(ctx, url, tok, h)
		if err != nil {
			t.Fatalf("%s: %v", reason, err)
		}
		defer c.Close()
		if a.Status != "refused" || a.Reason != reason || a.Code != int(ResumeCode(reason)) {
			t.Errorf("answer %+v; want refused %s %d", a, reason, ResumeCode(reason))
		}
		if got := resp.Header.Get("Zd-Resume-Refused"); got != reason && reason != ResumeGap && reason != ResumeEnded {
			t.Errorf("Zd-Resume-Refused %q; want %q", got, reason)
		}
		// gap and ended are found when the stream attaches, after a 101 for
		// the session (its subprotocol, no Zd-Resume-Refused); other
		// refusals choose the client's token, so that a browser completes
		// the handshake and sees the Close code.
		want := tok
		if resp.Header.Get("Zd-Resume-Refused") == "" {
			want = "chat"
		}
		if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != want {
			t.Errorf("%s: refusal chose subprotocol %q; want %q (fields %v)", reason, p, want, resp.Header)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _, err = c.ReadMessage()
		if !websocket.IsCloseError(err, a.Code) {
			t.Errorf("%s: after the answer: %v; want Close %d", reason, err, a.Code)
		}
		return a
	}

	refused("zd-resume."+newSecret()+".0", nil, ResumeUnknown)
	refused("zd-resume.short.0", nil, ResumeMalformed)
	refused("zd-resume."+newSecret()+".01", nil, ResumeMalformed)

	rc := &resumingClient{url: url, secret: newSecret(), h: http.Header{"Origin": {"http://app.test"}, "Cookie": {"sid=42; theme=dark"}}}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	refused("zd-resume."+rc.secret, nil, ResumeConflict)
	for range 5 {
		if err := rc.take(); err != nil {
			t.Fatal(err)
		}
	}
	cut(rc.c)
	waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
	tok := "zd-resume." + rc.secret + "." + strconv.FormatUint(rc.received, 10)
	refused(tok, http.Header{"Origin": {"http://app.test"}, "Cookie": {"sid=43; theme=dark"}}, ResumeCredentials)
	refused(tok, http.Header{"Origin": {"http://evil.test"}, "Cookie": {"sid=42; theme=dark"}}, ResumeCredentials)
	refused(tok, http.Header{"Origin": {"http://app.test"}}, ResumeCredentials)
	if st := r.Stats(); st.Detached != 1 {
		t.Fatalf("after foreign resumes: %d detached; want the session still waiting", st.Detached)
	}
	// The owner still comes back, with its cookie split in crumbs.
	rc.h = http.Header{"Origin": {"http://app.test"}, "Cookie": {"sid=42", "theme=dark"}}
	if _, err := rc.connect(ctx, true); err != nil {
		t.Fatalf("owner's resume after foreign ones: %v", err)
	}
	if err := rc.take(); err != nil {
		t.Fatal(err)
	}
	// A count beyond what was sent is a gap: the session ends.
	cut(rc.c)
	waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
	refused("zd-resume."+rc.secret+".999999", rc.h, ResumeGap)
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
	refused("zd-resume."+rc.secret+"."+strconv.FormatUint(rc.received, 10), rc.h, ResumeGap)

	st := r.Stats()
	for reason, want := range map[string]uint64{ResumeUnknown: 1, ResumeMalformed: 2, ResumeConflict: 1, ResumeCredentials: 3, ResumeGap: 2} {
		if st.ResumeRefused[reason] != want {
			t.Errorf("ResumeRefused[%s] = %d; want %d (all: %v)", reason, st.ResumeRefused[reason], want, st.ResumeRefused)
		}
	}
}

// TestResumeExpiredAndBounds: a client away longer than the window is
// told "expired"; one whose missed messages pass the replay bound is told
// "gap"; in both the backend is told the client went away (1001).
func TestResumeExpiredAndBounds(t *testing.T) {
	pb := startPush(t, 100000, time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute, MaxReplayPerSession: 64 << 10}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	expect := func(url string, rc *resumingClient, reason string) {
		t.Helper()
		c, _, a, err := dialResume(ctx, url+"/ws", "zd-resume."+rc.secret+"."+strconv.FormatUint(rc.received, 10), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if a.Status != "refused" || a.Reason != reason {
			t.Errorf("answer %+v; want refused %s", a, reason)
		}
	}
	// Expired: a backend that sends little, a client away past the window.
	slow := startPush(t, 3, 10*time.Millisecond)
	r2, url2 := startRelay(t, Config{Dial: slow.dial, ResumeWindow: 300 * time.Millisecond}, nil)
	rc := &resumingClient{url: url2 + "/ws", secret: newSecret()}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	cut(rc.c)
	waitFor(t, "the window to pass", 30*time.Second, func() bool { return r2.Stats().Sessions == 0 })
	expect(url2, rc, ResumeExpired)
	sid := slow.onlySession(t)
	waitFor(t, "the backend to see the close", 10*time.Second, func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return slow.closes[sid] == int(CloseGoingAway)
	})

	// Gap: a backend pushing 1,000 messages a second past a 64 KiB bound.
	rc = &resumingClient{url: url + "/ws", secret: newSecret()}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	cut(rc.c)
	waitFor(t, "the replay bound to end the session", 60*time.Second, func() bool { return r.Stats().Sessions == 0 })
	expect(url, rc, ResumeGap)
	found := false
	for _, cc := range r.Stats().Closes {
		found = found || cc.Reason == ReasonResumeGap
	}
	if !found {
		t.Errorf("no close counted as %s: %v", ReasonResumeGap, r.Stats().Closes)
	}
}

// TestResumeNotAsked: a client that offers no token sees nothing extra,
// and when it drops the backend gets a Close as before; a relay with
// resumption off refuses a token with "off".
func TestResumeNotAsked(t *testing.T) {
	pb := startPush(t, 1, time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := websocket.Dialer{Subprotocols: []string{"chat"}}
	c, resp, err := d.DialContext(ctx, url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Zd-Resume-Refused") != "" || resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Errorf("plain handshake answer fields %v", resp.Header)
	}
	_, data, err := c.ReadMessage()
	if err != nil || string(data) != "s0 push" {
		t.Fatalf("first message %q, %v; want the backend's s0 push", data, err)
	}
	sid := pb.onlySession(t)
	cut(c)
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
	waitFor(t, "the backend to see the close", 10*time.Second, func() bool {
		pb.mu.Lock()
		defer pb.mu.Unlock()
		return pb.closes[sid] == int(CloseGoingAway)
	})
	if st := r.Stats(); st.Detached != 0 || st.Resumed != 0 {
		t.Errorf("Stats detached %d resumed %d for a plain session", st.Detached, st.Resumed)
	}

	_, offURL := startRelay(t, Config{Dial: pb.dial}, nil)
	c, _, a, err := dialResume(ctx, offURL+"/ws", "zd-resume."+newSecret(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if a.Status != "refused" || a.Reason != ResumeOff || a.Code != 4501 {
		t.Errorf("answer with resumption off %+v; want refused off 4501", a)
	}
}

// TestResumeTakesOver: a client that comes back on a new connection while
// its old one still looks open to zd-queue (no reset reached it) gets the
// session; the old connection is closed.
func TestResumeTakesOver(t *testing.T) {
	pb := startPush(t, 200, 2*time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := &resumingClient{url: url + "/ws", secret: newSecret()}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := rc.send("c" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if err := rc.take(); err != nil {
			t.Fatal(err)
		}
	}
	old := rc.c
	t0 := time.Now()
	if _, err := rc.connect(ctx, true); err != nil {
		t.Fatalf("resume over a live old connection: %v", err)
	}
	t.Logf("took over in %v", time.Since(t0))
	old.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := old.ReadMessage(); err != nil {
			break // closed by zd-queue: the read ends
		}
	}
	old.Close()
	sid := pb.onlySession(t)
	waitFor(t, "the pushes", 30*time.Second, func() bool { return pb.sentTo(sid) == 200+10 })
	for rc.received < 210 {
		if err := rc.take(); err != nil {
			t.Fatalf("after %d: %v", rc.received, err)
		}
	}
	if strings.Join(rc.echoes, ",") != strings.Join(rc.sent, ",") {
		t.Errorf("echoes %v; want %v", rc.echoes, rc.sent)
	}
	if st := r.Stats(); st.Resumed != 1 {
		t.Errorf("Stats.Resumed = %d; want 1", st.Resumed)
	}
	rc.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(5*time.Second))
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
}

// TestResumeTokenChosen: when the backend chooses no subprotocol the
// handshake answer chooses the client's zd-resume token (browsers, Node's
// WebSocket and npm ws fail a handshake that offered subprotocols and got
// none back), for a new session, a resume and a refusal alike.
func TestResumeTokenChosen(t *testing.T) {
	pb := startPush(t, 0, time.Hour)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := http.Header{"Origin": {"http://app.test"}}
	dial := func(tok string) (*websocket.Conn, resumeAnswer) {
		t.Helper()
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{tok}}
		c, resp, err := d.DialContext(ctx, url+"/ws", h)
		if err != nil {
			t.Fatalf("dial with %s: %v", tok, err)
		}
		if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != tok {
			t.Errorf("handshake answer chose subprotocol %q; want the token %q", p, tok)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := c.ReadMessage()
		var a resumeAnswer
		if err == nil {
			err = json.Unmarshal(data, &a)
		}
		if err != nil {
			t.Fatalf("answer %q: %v", data, err)
		}
		return c, a
	}
	secret := newSecret()
	c, a := dial("zd-resume." + secret)
	if a.Status != "new" {
		t.Fatalf("answer %+v; want new", a)
	}
	cut(c)
	waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
	c, a = dial("zd-resume." + secret + ".0")
	if a.Status != "resumed" {
		t.Fatalf("answer %+v; want resumed", a)
	}
	c2, a := dial("zd-resume." + newSecret() + ".0")
	if a.Status != "refused" || a.Reason != ResumeUnknown {
		t.Errorf("answer %+v; want refused unknown", a)
	}
	c2.Close()
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(5*time.Second))
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
}

// TestPingTimeoutDetachesResumable: a resumable session whose client
// answers no ping is a drop, not an end: zd-queue closes the stream and
// the session waits for the client, which comes back and misses nothing.
func TestPingTimeoutDetachesResumable(t *testing.T) {
	const pushes = 200
	pb := startPush(t, pushes, 2*time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute, PingInterval: 20 * time.Millisecond, PongTimeout: 100 * time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := &resumingClient{url: url + "/ws", secret: newSecret()}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	pb.onlySession(t)
	// gorilla answers pings only while it reads: reading nothing, this
	// client answers none.
	waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
	for _, cc := range r.Stats().Closes {
		t.Errorf("a close was counted (%+v); a resumable session's ping timeout is a drop", cc)
	}
	old := rc.c
	if _, err := rc.connect(ctx, true); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// Reading all along (so answering pings) until every push came.
	for rc.received < pushes {
		if err := rc.take(); err != nil {
			t.Fatalf("after %d: %v", rc.received, err)
		}
	}
	rc.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(5*time.Second))
	waitFor(t, "the session to end", 30*time.Second, func() bool { return r.Stats().Sessions == 0 })
}
