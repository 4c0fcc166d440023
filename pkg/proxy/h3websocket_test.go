package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/zdtools/zd/internal/h3wsclient"
)

// wsEcho is a backend's WebSocket echo (coder/websocket, not the relay's
// code) that also records what each attempt saw of the handshake.
type wsEcho struct {
	mu      sync.Mutex
	resumes map[string][]int // Zd-Session-Id -> Zd-Resume values, in order
	fwd     []string         // X-Forwarded-For|Proto|Host of each handshake
}

func (e *wsEcho) handler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/forbidden" {
		w.Header().Set("X-Why", "backend says no")
		http.Error(w, "not for you", http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo.v1"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	n, _ := strconv.Atoi(r.Header.Get("Zd-Resume"))
	e.mu.Lock()
	if e.resumes == nil {
		e.resumes = map[string][]int{}
	}
	id := r.Header.Get("Zd-Session-Id")
	e.resumes[id] = append(e.resumes[id], n)
	e.fwd = append(e.fwd, r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("X-Forwarded-Proto")+"|"+r.Header.Get("X-Forwarded-Host"))
	e.mu.Unlock()
	for {
		typ, b, err := c.Read(context.Background())
		if err != nil {
			return
		}
		if err := c.Write(context.Background(), typ, b); err != nil {
			return
		}
	}
}

// h3Proxy is a Proxy serving HTTP/3 (and TLS on TCP) whose stop the test
// controls.
type h3Proxy struct {
	p       *Proxy
	udp     string
	tcp     string // TLS: HTTP/1.1 and HTTP/2
	roots   *x509.CertPool
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startH3Proxy(t *testing.T, cfg Config) *h3Proxy {
	t.Helper()
	tlsCfg, roots := selfSigned(t)
	cfg.TLS = tlsCfg
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hp := &h3Proxy{p: p, udp: pc.LocalAddr().String(), tcp: ln.Addr().String(), roots: roots, cancel: cancel, done: make(chan error, 1)}
	go func() { hp.done <- p.Serve(ctx, Listeners{TCP: []net.Listener{ln}, UDP: []net.PacketConn{pc}}) }()
	t.Cleanup(func() { hp.stop(t) })
	return hp
}

// stop ends Serve (the graceful stop) and closes the proxy; it returns how
// long Serve took to return.
func (hp *h3Proxy) stop(t *testing.T) time.Duration {
	if hp.stopped {
		return 0
	}
	hp.stopped = true
	start := time.Now()
	hp.cancel()
	select {
	case err := <-hp.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return within 30s of the stop")
	}
	took := time.Since(start)
	hp.p.Close()
	return took
}

func (hp *h3Proxy) dial(ctx context.Context, path string, o h3wsclient.Options) (*h3wsclient.Conn, error) {
	o.TLS = &tls.Config{RootCAs: hp.roots}
	return h3wsclient.Dial(ctx, hp.udp, path, o)
}

// TestH3WebSocketSurvivesDrains: RFC 9220 clients (quic-go's HTTP/3
// client, coder/websocket on the request stream) keep their sessions
// while the backends are drained in turn. Each client writes numbered
// messages from one goroutine and reads the echoes from another, so
// messages are in flight both ways during every move; every echo is
// checked for loss, duplication and order. The backends see the same
// X-Forwarded-* as for HTTP/1.1, the subprotocol chosen reaches the
// client, and the sessions count as h3 in Status and /metrics.
func TestH3WebSocketSurvivesDrains(t *testing.T) {
	const clients, msgs, drains = 6, 400, 6
	dir := sockDir(t)
	var echo wsEcho
	a := newTestBackend(t, dir, "a", echo.handler)
	b := newTestBackend(t, dir, "b", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{a.addr, b.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	conns := make([]*h3wsclient.Conn, clients)
	for i := range conns {
		o := h3wsclient.Options{WS: &websocket.DialOptions{Subprotocols: []string{"echo.v1"}}}
		if i%2 == 1 {
			// zd-queue's own permessage-deflate towards the client.
			o.WS.CompressionMode = websocket.CompressionNoContextTakeover
			o.WS.CompressionThreshold = 1
		}
		c, err := hp.dial(ctx, "/ws?client="+strconv.Itoa(i), o)
		if err != nil {
			t.Fatalf("client %d: dial: %v", i, err)
		}
		defer c.CloseQUIC()
		defer c.CloseNow()
		if c.Subprotocol() != "echo.v1" {
			t.Errorf("client %d: subprotocol %q; want echo.v1 (the backend's choice)", i, c.Subprotocol())
		}
		ext := c.Response.Header.Get("Sec-WebSocket-Extensions")
		if (i%2 == 1) != strings.Contains(ext, "permessage-deflate") {
			t.Errorf("client %d: 200 carries Sec-WebSocket-Extensions %q", i, ext)
		}
		conns[i] = c
	}

	// A session is counted by protocol once it runs, which is just after
	// its client got the 200.
	waitFor(t, "the h3 sessions attached", func() bool { return hp.p.Status().WebSocket.Protocols["h3"] == clients })
	st := hp.p.Status()
	if st.WebSocket.Protocols["h3"] != clients || st.WebSocket.Sessions != clients {
		t.Errorf("Status: websocket sessions %d, protocols %v; want h3 %d", st.WebSocket.Sessions, st.WebSocket.Protocols, clients)
	}
	onBackends := 0
	for _, b := range st.Backends {
		onBackends += b.WSProtocols["h3"]
	}
	if onBackends != clients {
		t.Errorf("Status: ws_protocols h3 over the backends %d; want %d", onBackends, clients)
	}
	var got float64
	for _, be := range []*testBackend{a, b} {
		got += max(0, metricValue(t, hp.p, `zdqueue_ws_backend_sessions{backend="`+be.addr+`",protocol="h3"}`))
	}
	if got != clients {
		t.Errorf("/metrics zdqueue_ws_backend_sessions{protocol=h3} over a and b = %v; want %d", got, clients)
	}

	type tally struct{ ok, lost, dup int }
	results := make([]tally, clients)
	errs := make(chan error, 2*clients)
	var wg sync.WaitGroup
	progress := make(chan struct{}, clients)
	for i, c := range conns {
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			for m := 0; m < msgs; m++ {
				if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("c%d m%d %s", i, m, strings.Repeat("x", m%200)))); err != nil {
					errs <- fmt.Errorf("client %d: write %d: %v", i, m, err)
					return
				}
				if m%40 == 0 {
					time.Sleep(2 * time.Millisecond) // pace, so the drains land mid-stream
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			next := 0
			for next < msgs {
				_, got, err := c.Read(ctx)
				if err != nil {
					errs <- fmt.Errorf("client %d: read after echo %d: %v", i, next, err)
					return
				}
				var ci, m int
				if _, err := fmt.Sscanf(string(got), "c%d m%d", &ci, &m); err != nil || ci != i {
					errs <- fmt.Errorf("client %d: echo %q is not one of its messages", i, got)
					return
				}
				switch {
				case m == next:
					results[i].ok++
					next++
				case m < next:
					results[i].dup++
				default:
					results[i].lost += m - next
					next = m + 1
				}
				if next == 20 {
					progress <- struct{}{}
				}
			}
		}()
	}
	for range clients {
		within(t, progress, 30*time.Second, "every client past echo 20")
	}
	for d := 0; d < drains; d++ {
		from, to := a, b
		if d%2 == 1 {
			from, to = b, a
		}
		if err := hp.p.Resume(to.addr); err != nil {
			t.Fatal(err)
		}
		res, err := hp.p.Drain(ctx, from.addr, 10*time.Second)
		if err != nil || !res.Drained {
			t.Fatalf("drain %s: %+v, %v", from.addr, res, err)
		}
		if n := hp.p.ws.Sessions(from.addr); n != 0 {
			t.Fatalf("after draining %s: %d sessions still on it", from.addr, n)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var sum tally
	for i, r := range results {
		if r.ok != msgs || r.lost != 0 || r.dup != 0 {
			t.Errorf("client %d: %d echoes in order, %d lost, %d duplicated or reordered; want %d, 0, 0", i, r.ok, r.lost, r.dup, msgs)
		}
		sum.ok += r.ok
		sum.lost += r.lost
		sum.dup += r.dup
	}
	for i, c := range conns {
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("client %d: close: %v", i, err)
		}
	}

	echo.mu.Lock()
	defer echo.mu.Unlock()
	if len(echo.resumes) != clients {
		t.Errorf("backends saw %d session ids; want %d", len(echo.resumes), clients)
	}
	for id, rs := range echo.resumes {
		if len(rs) < 2 {
			t.Errorf("session %s: attached %d times; want a move per drain it was on", id, len(rs))
		}
		for i, n := range rs {
			if n != i {
				t.Errorf("session %s: Zd-Resume values %v; want 0, 1, 2, ...", id, rs)
				break
			}
		}
	}
	for _, f := range echo.fwd {
		if f != "127.0.0.1|https|"+hp.udp {
			t.Errorf("backend handshake X-Forwarded-For|Proto|Host = %q; want 127.0.0.1|https|%s", f, hp.udp)
			break
		}
	}
	ws := hp.p.ws.Stats()
	t.Logf("%d clients, %d echoes in order, %d lost, %d dup/reordered through %d drains; moved %d, move failed %d",
		clients, sum.ok, sum.lost, sum.dup, drains, ws.Moved, ws.MoveFailed)
}

// TestH3WebSocketKeepAlive: a session with nothing to say outlives QUIC's
// idle timeout because zd-queue sends QUIC PINGs. Both sides ask for a 1 s
// idle timeout here (quic-go's default is 30 s; ZD_SOAK=1 runs that case
// too) and the client sends no keep-alive of its own, so without the
// server's the connection dies after 1 s of the 4 s of silence. The HTTP/3
// idle timeout (--idle-timeout) is 1 s too: an open WebSocket is a request
// in progress, so it must not close the connection either.
func TestH3WebSocketKeepAlive(t *testing.T) {
	idle := time.Second
	if os.Getenv("ZD_SOAK") == "1" {
		idle = 0 // quic-go's 30 s on both sides
	}
	dir := sockDir(t)
	var echo wsEcho
	be := newTestBackend(t, dir, "a", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{be.addr}, quicIdleTimeout: idle, IdleTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := hp.dial(ctx, "/ws", h3wsclient.Options{QUIC: &quic.Config{MaxIdleTimeout: idle}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseQUIC()
	defer c.CloseNow()
	silence := 4 * idle
	if idle == 0 {
		silence = 35 * time.Second
	}
	select {
	case <-c.QUIC.Context().Done():
		t.Fatalf("QUIC connection closed during %v of silence: %v", silence, context.Cause(c.QUIC.Context()))
	case <-time.After(silence): // the silence is what is tested
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("still there?")); err != nil {
		t.Fatalf("write after %v idle: %v", silence, err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != "still there?" {
		t.Fatalf("echo after %v idle = %q, %v", silence, got, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestH3WebSocketGracefulStop: stopping zd-queue gives an HTTP/3 session
// a WebSocket Close 1012 (Service Restart), as HTTP/1.1 sessions get, well
// within the grace, instead of the QUIC connection torn down when the
// grace runs out.
func TestH3WebSocketGracefulStop(t *testing.T) {
	const grace = 8 * time.Second
	dir := sockDir(t)
	var echo wsEcho
	be := newTestBackend(t, dir, "a", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{be.addr}, ShutdownGrace: grace})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := hp.dial(ctx, "/ws", h3wsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseQUIC()
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	read := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		read <- err
	}()
	took := hp.stop(t)
	err = within(t, read, 10*time.Second, "the client saw no end of its session")
	if code := websocket.CloseStatus(err); code != websocket.StatusServiceRestart {
		t.Errorf("client's read after the stop: %v (close code %d); want Close 1012", err, code)
	}
	if took >= grace {
		t.Errorf("Serve took %v to stop; want well within the %v grace once the session closed", took, grace)
	}
	if n := metricValue(t, hp.p, `zdqueue_ws_closes_total{code="1012",reason="shutdown"}`); n != 1 {
		t.Errorf("zdqueue_ws_closes_total{code=1012,reason=shutdown} = %v; want 1", n)
	}
}

// TestH3ExtendedConnectBadInput: what is not a WebSocket over HTTP/3 gets
// the answer RFC 9114/9220 call for, and the connection serves on.
func TestH3ExtendedConnectBadInput(t *testing.T) {
	dir := sockDir(t)
	var echo wsEcho
	be := newTestBackend(t, dir, "a", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{be.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	qc, err := quic.DialAddr(ctx, hp.udp, &tls.Config{RootCAs: hp.roots, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	hc := h3wsclient.NewClientConn(qc)
	cc := hc.HTTP3()
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		t.Fatal("no SETTINGS from zd-queue")
	}
	if !cc.Settings().EnableExtendedConnect {
		t.Fatal("zd-queue's SETTINGS do not allow extended CONNECT (RFC 9220)")
	}

	// Requests quic-go's client can send: answered with a status.
	for _, tc := range []struct {
		name, proto, path string
		hdr               http.Header
		want              int
		wantHdr           [2]string
	}{
		{"CONNECT without :protocol", "", "", nil, http.StatusMethodNotAllowed, [2]string{}},
		{":protocol other than websocket", "connect-udp", "/ws", nil, http.StatusNotImplemented, [2]string{}},
		{"Sec-WebSocket-Version 8", "websocket", "/ws", http.Header{"Sec-Websocket-Version": {"8"}}, http.StatusUpgradeRequired, [2]string{"Sec-Websocket-Version", "13"}},
		{"no Sec-WebSocket-Version", "websocket", "/ws", nil, http.StatusUpgradeRequired, [2]string{"Sec-Websocket-Version", "13"}},
		{"backend refuses", "websocket", "/forbidden", http.Header{"Sec-Websocket-Version": {"13"}}, http.StatusForbidden, [2]string{"X-Why", "backend says no"}},
	} {
		rs, err := cc.OpenRequestStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		u := "https://" + hp.udp + tc.path
		req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, u, nil)
		req.Proto = tc.proto
		if tc.proto == "" {
			req.URL.Path = ""
		}
		for k, vv := range tc.hdr {
			req.Header[k] = vv
		}
		if err := rs.SendRequestHeader(req); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		resp, err := rs.ReadResponse()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		rs.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: answered %d %q; want %d", tc.name, resp.StatusCode, body, tc.want)
		}
		if tc.wantHdr[0] != "" && resp.Header.Get(tc.wantHdr[0]) != tc.wantHdr[1] {
			t.Errorf("%s: %s = %q; want %q", tc.name, tc.wantHdr[0], resp.Header.Get(tc.wantHdr[0]), tc.wantHdr[1])
		}
	}

	// Malformed requests (RFC 9114 section 4.1.2, 4.4; RFC 9220 section 3)
	// no client library will send: written as raw HEADERS frames. The
	// stream is reset with H3_MESSAGE_ERROR.
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"CONNECT with :path and :scheme but no :protocol",
			[][2]string{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", hp.udp}, {":path", "/ws"}}},
		{"extended CONNECT without :path",
			[][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", hp.udp}}},
		{"extended CONNECT without :authority",
			[][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":path", "/ws"}}},
	} {
		code, err := rawH3Request(ctx, qc, tc.fields)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if code != http3.ErrCodeMessageError {
			t.Errorf("%s: stream reset with %v; want H3_MESSAGE_ERROR", tc.name, code)
		}
	}

	// A client that breaks RFC 6455 on the stream (an unmasked frame) gets
	// Close 1002 and then the stream's end (a FIN, not a reset), as an
	// HTTP/1.1 client gets Close and a half-close.
	rs := rawH3WebSocket(t, ctx, cc, hp.udp)
	if _, err := rs.Write([]byte{0x81, 0x02, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	rs.SetReadDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(rs)
	if err != nil || len(got) < 4 || got[0] != 0x88 || int(got[2])<<8|int(got[3]) != 1002 {
		t.Errorf("after an unmasked frame: read % x, %v; want a Close 1002 frame, then the stream's end", got, err)
	}
	// The relay half-closes right after its Close (h3Stream.CloseWrite);
	// without that the stream would end only when its linger (5 s) ran out.
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the stream ended %v after the Close; want at once (a half-close)", d)
	}
	rs.Close()

	// The same connection still serves WebSockets after all that, two at
	// once on streams of their own; one ending leaves the other be.
	var both [2]*h3wsclient.Conn
	for i := range both {
		c, err := h3wsclient.DialOn(ctx, hc, hp.udp, "/ws", h3wsclient.Options{})
		if err != nil {
			t.Fatalf("dial %d on the bad requests' connection: %v", i, err)
		}
		defer c.CloseNow()
		both[i] = c
	}
	echoOn := func(c *h3wsclient.Conn, msg string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
	echoOn(both[0], "one")
	echoOn(both[1], "two")
	if err := both[0].Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close the first: %v", err)
	}
	echoOn(both[1], "two, after one closed")
	if err := both[1].Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close the second: %v", err)
	}
	if qc.Context().Err() != nil {
		t.Errorf("the bad requests' connection was closed: %v", context.Cause(qc.Context()))
	}
	waitFor(t, "both sessions ended", func() bool { return hp.p.ws.Sessions("") == 0 })
}

// rawH3Request sends one HEADERS frame with fields on a new request stream
// and returns the error code the server reset the stream with.
func rawH3Request(ctx context.Context, qc *quic.Conn, fields [][2]string) (http3.ErrCode, error) {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range fields {
		if err := enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return 0, err
		}
	}
	frame := quicvarint.Append(nil, 0x1) // HEADERS
	frame = quicvarint.Append(frame, uint64(block.Len()))
	frame = append(frame, block.Bytes()...)
	str, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	defer str.CancelRead(0)
	if _, err := str.Write(frame); err != nil {
		return 0, err
	}
	str.Close()
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(str)
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return http3.ErrCode(se.ErrorCode), nil
	}
	return 0, fmt.Errorf("no stream reset: read %d bytes, %v", len(b), err)
}

// TestH3WebSocketClientThatDoesNotRead: an HTTP/3 client that stops
// reading fills its stream's flow-control window, the relay's write to it
// blocks, and after WSWriteTimeout the session ends (1008 write-timeout,
// counted) with the stream reset: h3Stream.Close must end a blocked write
// (without its write deadline the session stays until the client goes).
// The client writes raw frames on the request stream and never closes it
// (coder/websocket would close on its own write timeout, which would end
// the blocked write too).
func TestH3WebSocketClientThatDoesNotRead(t *testing.T) {
	dir := sockDir(t)
	var echo wsEcho
	be := newTestBackend(t, dir, "a", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{be.addr}, WSWriteTimeout: time.Second, WSPingInterval: -1, ShutdownGrace: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A small receive window: what the client does not read soon blocks
	// the server's writes.
	qconf := &quic.Config{InitialStreamReceiveWindow: 64 << 10, MaxStreamReceiveWindow: 64 << 10,
		InitialConnectionReceiveWindow: 256 << 10, MaxConnectionReceiveWindow: 256 << 10}
	qc, err := quic.DialAddr(ctx, hp.udp, &tls.Config{RootCAs: hp.roots, NextProtos: []string{http3.NextProtoH3}}, qconf)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	cc := h3wsclient.NewClientConn(qc).HTTP3()
	rs := rawH3WebSocket(t, ctx, cc, hp.udp)
	// Binary frames of 16 KiB, masked with a zero key, echoed by the
	// backend and never read here.
	frame := append([]byte{0x82, 0x80 | 126, 0x40, 0x00, 0, 0, 0, 0}, make([]byte, 16<<10)...)
	wrote := make(chan int, 1)
	go func() {
		n := 0
		rs.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for ; n < 256; n++ { // 4 MiB, far past every window on the way
			if _, err := rs.Write(frame); err != nil {
				break
			}
		}
		wrote <- n
	}()
	waitFor(t, "the session ended by the write timeout", func() bool {
		return metricValue(t, hp.p, `zdqueue_ws_closes_total{code="1008",reason="write-timeout"}`) == 1 && hp.p.ws.Sessions("") == 0
	})
	qc.CloseWithError(0, "")
	t.Logf("client wrote %d frames of 16 KiB", <-wrote)
}

// rawH3WebSocket opens a WebSocket to /ws on a request stream of cc by
// hand (an extended CONNECT answered 200), so a test can write any bytes
// on it, RFC 6455 or not.
func rawH3WebSocket(t *testing.T, ctx context.Context, cc *http3.ClientConn, addr string) *http3.RequestStream {
	t.Helper()
	rs, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+addr+"/ws", nil)
	req.Proto = "websocket"
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := rs.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	if resp, err := rs.ReadResponse(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("extended CONNECT: %v, %v; want 200", resp, err)
	}
	return rs
}
