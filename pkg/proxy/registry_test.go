package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// waitConns waits until the registry counts want (protocol, then state).
func waitConns(t *testing.T, p *Proxy, want map[string]map[string]int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := p.ClientConnCounts()
		if maps.EqualFunc(got, want, maps.Equal) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client connections = %v; want %v", got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The registry follows real connections through their states: HTTP/1.1
// on the fast path (active while a request is, idle between requests),
// one handed to net/http (a chunked upload), an HTTP/2 one (active while
// a stream is open), a WebSocket tunnel (upgraded), and forgets each when
// it closes. Status and the admin JSON report the same counts.
func TestConnRegistryStates(t *testing.T) {
	dir := sockDir(t)
	g := newGate()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.Read(r.Context()) // until the client closes
			return
		}
		if r.URL.Path == "/hold" {
			g.wait()
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	t.Cleanup(g.open)
	p := px.p
	waitConns(t, p, map[string]map[string]int{})

	// A: an HTTP/1.1 request that waits at the backend.
	a, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	io.WriteString(a, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	waitConns(t, p, map[string]map[string]int{"h1": {"active": 1}})

	// B: an HTTP/1.1 request answered; the connection stays open, idle.
	b, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bbr := bufio.NewReader(b)
	exchange := func(req string) {
		t.Helper()
		io.WriteString(b, req)
		resp, err := http.ReadResponse(bbr, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	exchange("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitConns(t, p, map[string]map[string]int{"h1": {"active": 1, "idle": 1}})
	var since time.Time
	p.EachClientConn(func(c ClientConn) bool {
		if c.State == "idle" {
			since = c.Since
		}
		return true
	})
	if time.Since(since) < 0 || time.Since(since) > time.Minute {
		t.Errorf("idle connection's since = %v; want a moment ago", since)
	}

	// C: an upload in chunks: handed to net/http, which then keeps the
	// connection idle for the next request.
	cc, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	io.WriteString(cc, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(cc), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("chunked upload: %v, %v", resp, err)
	}
	waitConns(t, p, map[string]map[string]int{"h1": {"active": 1, "idle": 2}})
	servers := map[string]int{}
	p.EachClientConn(func(c ClientConn) bool {
		servers[c.Server+" "+c.State]++
		if c.Server == "net/http" && c.ReadAhead != 0 {
			t.Errorf("handed connection: read ahead %d; want 0 (net/http read it all)", c.ReadAhead)
		}
		return true
	})
	if want := map[string]int{"fast active": 1, "fast idle": 1, "net/http idle": 1}; !maps.Equal(servers, want) {
		t.Errorf("servers and states %v; want %v", servers, want)
	}

	// D: HTTP/2 with prior knowledge: idle with no stream open, active
	// while one is.
	r := dialRawH2(t, px.addr)
	waitConns(t, p, map[string]map[string]int{"h1": {"active": 1, "idle": 2}, "h2c": {"idle": 1}})
	hold := slices.Clone(rawGET)
	hold[len(hold)-1] = "/hold"
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(hold...), EndStream: true, EndHeaders: true})
	waitConns(t, p, map[string]map[string]int{"h1": {"active": 1, "idle": 2}, "h2c": {"active": 1}})

	// E: a WebSocket: handed to net/http, then upgraded.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+px.addr+"/ws", &websocket.DialOptions{HTTPClient: client(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	want := map[string]map[string]int{"h1": {"active": 1, "idle": 2, "upgraded": 1}, "h2c": {"active": 1}}
	waitConns(t, p, want)
	if st := p.Status(); !maps.EqualFunc(st.ClientConns, want, maps.Equal) {
		t.Errorf("Status().ClientConns = %v; want %v", st.ClientConns, want)
	}
	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/_zero-downtime/status", nil))
	var js struct {
		ClientConns map[string]map[string]int `json:"client_conns"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &js); err != nil || !maps.EqualFunc(js.ClientConns, want, maps.Equal) {
		t.Errorf("admin status client_conns = %v (%v); want %v", js.ClientConns, err, want)
	}

	// The held requests are answered: A and D go idle.
	g.open()
	if resp, err := http.ReadResponse(bufio.NewReader(a), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("held request: %v, %v", resp, err)
	}
	if got := r.until(t, 1); !slices.Equal(got, []string{"200 on 1"}) {
		t.Fatalf("h2 stream: %v", got)
	}
	waitConns(t, p, map[string]map[string]int{"h1": {"idle": 3, "upgraded": 1}, "h2c": {"idle": 1}})

	// Closed by the clients: forgotten.
	ws.Close(websocket.StatusNormalClosure, "")
	a.Close()
	b.Close()
	cc.Close()
	r.conn.Close()
	waitConns(t, p, map[string]map[string]int{})
}

// Over TLS: HTTP/1.1 and h2 by ALPN on the fast path, HTTP/3 on quic-go.
func TestConnRegistryTLS(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	tlsCfg, roots := selfSigned(t)
	tcpAddr, udpAddr, p := startTLSProxy(t, Config{Backends: []string{be.addr}, TLS: tlsCfg})

	h1 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer h1.CloseIdleConnections()
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer h3.Close()
	for _, c := range []struct {
		rt    http.RoundTripper
		addr  string
		proto int
	}{{h1, tcpAddr, 1}, {h2, tcpAddr, 2}, {h3, udpAddr, 3}} {
		resp, err := (&http.Client{Transport: c.rt, Timeout: 20 * time.Second}).Get("https://" + c.addr + "/")
		if err != nil {
			t.Fatalf("HTTP/%d: %v", c.proto, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != c.proto {
			t.Fatalf("got %s; want HTTP/%d", resp.Proto, c.proto)
		}
	}
	waitConns(t, p, map[string]map[string]int{"h1+tls": {"idle": 1}, "h2": {"idle": 1}, "h3": {"idle": 1}})
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	h3.Close()
	waitConns(t, p, map[string]map[string]int{})
}
