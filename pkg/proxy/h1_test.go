package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"
)

// FuzzH1Parse checks the fast path's request parser against net/http's:
// whatever it accepts, net/http accepts too and reads the same way
// (method, target, URL, Host, headers, body length, Connection: close).
// What it does not accept goes to net/http, so refusing is always safe;
// accepting wrongly is the bug this looks for.
func FuzzH1Parse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /up?x=1 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
		"GET /a%2Fb HTTP/1.1\r\nHost: a\r\nconnection: Close\r\nx-dup: 1\r\nX-Dup: 2\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET /p HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n",
		"GET /p HTTP/1.0\r\nHost: a\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /(a)!*'#f HTTP/1.1\r\nHost: a\r\nUser-Agent:\r\n\r\n",
		"DELETE //x/y;z=1?q HTTP/1.1\r\nHost: [::1]:8\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		end := bytes.Index(in, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		head := in[:end+4]
		hc := &h1conn{hdr: http.Header{}, tmpl: &http.Request{}}
		// The screen looks at every head the fast path does not serve and
		// at heads still coming in: it must not panic, and must never
		// refuse a head the fast path serves.
		for i := range in {
			screenHead(in[:i])
		}
		headEnd(in)
		blankLines(in)
		v, why := screenHead(in)
		r, ok := hc.parse(head)
		if !ok {
			return
		}
		if v != headPass {
			t.Fatalf("the screen refuses (%d, %s) what the fast path serves:\n%q", v, why, in)
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v):\n%q", err, head)
		}
		if r.Method != want.Method || r.RequestURI != want.RequestURI || r.Host != want.Host ||
			r.ContentLength != want.ContentLength || r.Close != want.Close || r.Proto != want.Proto {
			t.Fatalf("request line or framing differs:\nfast %s %s host %q len %d close %v\nnet/http %s %s host %q len %d close %v\n%q",
				r.Method, r.RequestURI, r.Host, r.ContentLength, r.Close,
				want.Method, want.RequestURI, want.Host, want.ContentLength, want.Close, head)
		}
		if r.URL.Path != want.URL.Path || r.URL.RawPath != want.URL.RawPath || r.URL.RawQuery != want.URL.RawQuery {
			t.Fatalf("URL differs: fast %#v, net/http %#v\n%q", *r.URL, *want.URL, head)
		}
		if !reflect.DeepEqual(map[string][]string(r.Header), map[string][]string(want.Header)) {
			t.Fatalf("headers differ:\nfast %q\nnet/http %q\n%q", r.Header, want.Header, head)
		}
	})
}

// rawConn dials the proxy and returns the connection and a reader for
// the responses, so a test can send exactly the bytes it means to.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func readBody(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// Requests pipelined on one connection are answered in order, also when
// one in the middle is of a kind the fast path hands to net/http (a
// chunked upload): the connection moves over with the bytes already read.
func TestH1PipelineAndHandOver(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	})
	_ = be
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c, br := rawConn(t, px.addr)
	io.WriteString(c, "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"+
		"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"+
		"GET /d HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"GET /a?x=1 ", "POST /b abc", "POST /c hi", "GET /d "} {
		resp, body := readBody(t, br, "GET")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// HEAD, 204 and 304 responses carry no body; the connection stays in
// step for the next request.
func TestH1BodilessResponses(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c, br := rawConn(t, px.addr)
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{{"HEAD", "/", 200, ""}, {"GET", "/204", 204, ""}, {"GET", "/304", 304, ""}, {"GET", "/", 200, "hello world"}} {
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: h\r\n\r\n", tc.method, tc.path)
		resp, body := readBody(t, br, tc.method)
		if resp.StatusCode != tc.code || body != tc.body {
			t.Fatalf("%s %s: got %d %q; want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
		if tc.method == "HEAD" && resp.ContentLength != 11 {
			t.Errorf("HEAD: Content-Length %d; want the backend's 11", resp.ContentLength)
		}
	}
}

// A held request whose client goes away gives up its place in the buffer
// at once, and is counted as client_gone.
func TestH1HeldClientGone(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	px.p.Pause("")
	c, _ := rawConn(t, px.addr)
	io.WriteString(c, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody")
	waitFor(t, "the request held", func() bool { return held(px.p) == 1 })
	c.Close()
	waitFor(t, "the held request dropped", func() bool { return held(px.p) == 0 })
	waitFor(t, "client_gone counted", func() bool {
		return metricValue(t, px.p, `zdqueue_requests_total{outcome="client_gone"}`) == 1
	})
	px.p.Resume("")
	if n := be.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests; want none (the client left)", n)
	}
}

// A client that leaves in the middle of a streamed response ends the
// backend's request too.
func TestH1StreamClientGone(t *testing.T) {
	dir := sockDir(t)
	ended := make(chan struct{})
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(ended)
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c, br := rawConn(t, px.addr)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: 1\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	c.Close()
	within(t, ended, 10*time.Second, "the backend's request did not end after the client left")
}

// A graceful stop lets a request in flight finish, its answer saying
// Connection: close, and closes an idle keep-alive connection once it has
// been idle a while (not at once: the client may be sending on it).
func TestH1GracefulStop(t *testing.T) {
	dir := sockDir(t)
	slow := newGate()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slow.wait()
		}
		io.WriteString(w, "ok")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	t.Cleanup(slow.open)
	idle, ibr := rawConn(t, px.addr)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readBody(t, ibr, "GET")
	busy, bbr := rawConn(t, px.addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	waitFor(t, "the slow request in flight", func() bool { return px.p.inflight.Load() == 1 })
	reuse, rbr := rawConn(t, px.addr)
	io.WriteString(reuse, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	readBody(t, rbr, "GET")
	stopped := make(chan struct{})
	go func() { px.stop(); close(stopped) }()
	waitFor(t, "the stop to begin", func() bool { return px.p.stopping.Load() })
	// A client reusing its keep-alive connection during the stop gets an
	// answer (and Connection: close), not a reset.
	io.WriteString(reuse, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := readBody(t, rbr, "GET"); resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("request on a kept-alive connection during the stop: %d %q close=%v; want 200 ok with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection at stop: %v; want EOF", err)
	}
	slow.open()
	resp, body := readBody(t, bbr, "GET")
	if resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("request in flight at stop: %d %q close=%v; want 200 ok with Connection: close", resp.StatusCode, body, resp.Close)
	}
	<-stopped
}
