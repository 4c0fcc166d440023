package wsrelay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// closes returns how many sessions ended with code for reason.
func closes(r *Relay, code uint16, reason string) uint64 {
	for _, c := range r.Stats().Closes {
		if c.Code == code && c.Reason == reason {
			return c.Count
		}
	}
	return 0
}

// answerPings reads c's frames until it fails, answering each Ping with a
// Pong; data frames go to msgs, and each Ping is counted on pings.
func answerPings(c *rawClient, msgs chan<- srvFrame, pings chan<- struct{}) {
	for {
		f, err := c.readFrame(readBound)
		if err != nil {
			close(msgs)
			return
		}
		switch f.op {
		case opPing:
			c.c.Write(frame(true, 0, opPong, f.payload, false))
			select {
			case pings <- struct{}{}:
			default:
			}
		case opClose:
			close(msgs)
			return
		default:
			msgs <- f
		}
	}
}

// TestPingTimeoutEndsSilentClient: a client that never answers the relay's
// pings (a half-open connection, as far as the relay can tell) loses its
// session within PingInterval + PongTimeout, counted 1006 "ping-timeout",
// and its backend is told; a client that answers keeps its session through
// many pings, and neither the pings nor its pongs reach the backend.
func TestPingTimeoutEndsSilentClient(t *testing.T) {
	a := startEcho(t, "a", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{PingInterval: 100 * time.Millisecond, PongTimeout: 150 * time.Millisecond}, rt)

	silent := dialRaw(t, url+"/ws", nil)
	defer silent.c.Close()
	live := dialRaw(t, url+"/ws", nil)
	defer live.c.Close()
	msgs, pings := make(chan srvFrame, 16), make(chan struct{}, 64)
	go answerPings(live, msgs, pings)
	waitFor(t, "both sessions on the backend", 10*time.Second, func() bool { return a.open() == 2 })

	start := time.Now()
	waitFor(t, "the silent client's session to end as ping-timeout", 20*time.Second, func() bool {
		return closes(r, CloseAbnormal, ReasonPingTimeout) == 1
	})
	t.Logf("silent client's session ended after %v", time.Since(start).Round(time.Millisecond))
	// Its connection was closed: it reads the pings it never answered,
	// then the end of the stream (no Close frame).
	for {
		f, err := silent.readFrame(10 * time.Second)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("silent client: %v; want EOF after its pings", err)
			}
			break
		}
		if f.op != opPing {
			t.Fatalf("silent client got opcode %d; want only pings (9) before EOF", f.op)
		}
	}
	waitFor(t, "the backend to see the silent session end", 10*time.Second, func() bool { return a.open() == 1 })

	// The live client answered every ping so far; it keeps its session
	// through several more.
	for i := range 5 {
		select {
		case <-pings:
		case <-time.After(20 * time.Second):
			t.Fatalf("live client: ping %d did not come", i+1)
		}
	}
	live.write(frame(true, 0, opText, []byte("hello"), false), 0)
	select {
	case f, ok := <-msgs:
		if !ok || string(f.payload) != "hello" {
			t.Fatalf("live client's echo = %q (open %v); want hello", f.payload, ok)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("live client: no echo")
	}
	if got := closes(r, CloseAbnormal, ReasonPingTimeout); got != 1 {
		t.Errorf("ping-timeout closes = %d; want 1 (the live client answered)", got)
	}
	waitFor(t, "one session open (the live client's)", 10*time.Second, func() bool { return r.Sessions("") == 1 })
	st := r.Stats()
	if st.MessagesToBackend != 1 || st.MessagesToClient != 1 {
		t.Errorf("messages to backend/client = %d/%d; want 1/1 (pings and pongs are not messages)", st.MessagesToBackend, st.MessagesToClient)
	}
	if n := a.echoed.Load(); n != 1 {
		t.Errorf("the backend echoed %d messages; want 1", n)
	}
}

// TestWriteTimeoutEndsClientThatDoesNotRead: a client that sends but never
// reads fills every buffer between it and the relay; the relay's write to
// it then makes no progress for WriteTimeout and the session ends, counted
// 1008 "write-timeout", the backend told; another session is unaffected.
func TestWriteTimeoutEndsClientThatDoesNotRead(t *testing.T) {
	a := startEcho(t, "a", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{WriteTimeout: 300 * time.Millisecond, PingInterval: -1}, rt)

	stuck := dialRaw(t, url+"/ws", nil)
	defer stuck.c.Close()
	stuck.c.(*net.TCPConn).SetReadBuffer(4096)
	other := dialRaw(t, url+"/ws", nil)
	defer other.c.Close()
	waitFor(t, "both sessions on the backend", 10*time.Second, func() bool { return a.open() == 2 })

	// 64 KiB messages, echoed by the backend, until the relay gives up on
	// the client or 64 MiB went; the writes stop when the session ends.
	big := frame(true, 0, opBinary, bytes.Repeat([]byte{'x'}, 64<<10), false)
	sent := make(chan int, 1)
	go func() {
		n := 0
		stuck.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for ; n < 1024; n++ {
			if _, err := stuck.c.Write(big); err != nil {
				break
			}
		}
		sent <- n
	}()
	start := time.Now()
	waitFor(t, "the stuck client's session to end as write-timeout", 60*time.Second, func() bool {
		return closes(r, ClosePolicyViolation, ReasonWriteTimeout) == 1
	})
	t.Logf("the session of the client that does not read ended after %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, "the backend to see it end", 10*time.Second, func() bool { return a.open() == 1 })
	// The relay closed the connection: the client's writes fail (or the
	// 1024 were all taken, which means nothing was stuck).
	select {
	case n := <-sent:
		if n == 1024 {
			t.Fatalf("all %d messages were taken; the test never stalled the relay", n)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stuck client's writes went on after its session ended")
	}

	// The other session still echoes.
	other.write(frame(true, 0, opText, []byte("still here"), false), 0)
	f, err := other.readMessage(20 * time.Second)
	if err != nil || string(f.payload) != "still here" {
		t.Fatalf("other client's echo = %q, %v; want \"still here\"", f.payload, err)
	}
	// The close is counted before the session is let go.
	waitFor(t, "one session open", 10*time.Second, func() bool { return r.Sessions("") == 1 })
	if got := r.Stats().HeldBytes; got != 0 {
		t.Errorf("HeldBytes = %d; want 0", got)
	}
}

// noDeadline hides a connection's deadlines, as an h2 or h3 stream may
// have none.
type noDeadline struct{ c net.Conn }

func (n noDeadline) Read(p []byte) (int, error)  { return n.c.Read(p) }
func (n noDeadline) Write(p []byte) (int, error) { return n.c.Write(p) }
func (n noDeadline) Close() error                { return n.c.Close() }

// TestWriteTimeoutWithoutDeadlines: the same bound on a client stream that
// has no deadlines (Open + Run over a stream that hides them): a timer
// closes it.
func TestWriteTimeoutWithoutDeadlines(t *testing.T) {
	a := startEcho(t, "a", false)
	rt := &router{}
	rt.set(a)
	r := New(Config{Dial: rt.dial, WriteTimeout: 300 * time.Millisecond, PingInterval: -1})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Close(ctx)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, _, err := r.Open(context.Background(), &Request{Target: "/ws", Host: "x", Header: http.Header{}, Transport: "h2"})
		if err != nil {
			c.Close()
			return
		}
		s.Run(noDeadline{c}, nil)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	waitFor(t, "the session on the backend", 10*time.Second, func() bool { return a.open() == 1 })
	big := frame(true, 0, opBinary, []byte(strings.Repeat("y", 64<<10)), false)
	go func() {
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for range 1024 {
			if _, err := c.Write(big); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the session to end as write-timeout", 60*time.Second, func() bool {
		return closes(r, ClosePolicyViolation, ReasonWriteTimeout) == 1
	})
	waitFor(t, "the backend to see it end", 10*time.Second, func() bool { return a.open() == 0 })
}

// TestPingsLeaveResumeCountsAlone: a resumable session pinged every 20 ms
// through a cut and a resume: the counts the resume answer gives (what
// zd-queue has of the client's messages, what it replays) and the
// numbering of every backend message are those of the data messages
// alone, and the backend gets each client message once.
func TestPingsLeaveResumeCountsAlone(t *testing.T) {
	const pushes, sends = 150, 10
	pb := startPush(t, pushes, 4*time.Millisecond)
	r, url := startRelay(t, Config{Dial: pb.dial, ResumeWindow: time.Minute, PingInterval: 20 * time.Millisecond, PongTimeout: 10 * time.Second}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rc := &resumingClient{url: url + "/ws", secret: newSecret()}
	pings := 0
	countPings := func(c *websocket.Conn) {
		c.SetPingHandler(func(p string) error {
			pings++
			return c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(5*time.Second))
		})
	}
	if _, err := rc.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	countPings(rc.c)
	sid := pb.onlySession(t)
	for i := 0; i < sends; i++ {
		if err := rc.send("c" + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Take messages until pings came in between.
	for pings < 3 && rc.received < pushes {
		if err := rc.take(); err != nil {
			t.Fatal(err)
		}
	}
	if pings < 3 {
		t.Fatalf("%d pings while %d messages came; want at least 3", pings, rc.received)
	}
	cut(rc.c)
	waitFor(t, "the session to be detached", 30*time.Second, func() bool { return r.Stats().Detached == 1 })
	before := pb.sentTo(sid)
	waitFor(t, "the backend to send while the client is away", 30*time.Second, func() bool { return pb.sentTo(sid) >= before+10 })
	a, err := rc.connect(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	countPings(rc.c)
	if a.Have != sends {
		t.Errorf("resume answer: zd-queue has %d of the client's messages; want %d (pongs are not messages)", a.Have, sends)
	}
	waitFor(t, "the backend to push all", 60*time.Second, func() bool { return pb.sentTo(sid) == pushes+sends })
	for rc.received < pushes+sends {
		if err := rc.take(); err != nil {
			t.Fatalf("after %d messages: %v", rc.received, err)
		}
	}
	pb.mu.Lock()
	got := strings.Join(pb.got[sid], ",")
	pb.mu.Unlock()
	if want := strings.Join(rc.sent, ","); got != want {
		t.Errorf("backend got %v\nwant %v", got, want)
	}
	t.Logf("%d pings answered; resume answer %+v", pings, a)
	if st := r.Stats(); st.MessagesToBackend != sends {
		t.Errorf("Stats.MessagesToBackend = %d; want %d", st.MessagesToBackend, sends)
	}
}
