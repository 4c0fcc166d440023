package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func TestPassThroughHeadersAndBody(t *testing.T) {
	dir := sockDir(t)
	var got http.Header
	var gotBody, gotHost string
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		gotHost = r.Host
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("X-End", "to-end")
		w.WriteHeader(201)
		io.WriteString(w, "created")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	req, _ := http.NewRequest("POST", px.url+"/p/a%2Fb?q=1", strings.NewReader("hello body"))
	req.Host = "example.test"
	req.Header.Set("Connection", "X-Drop-Me")
	req.Header.Set("X-Drop-Me", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Keep", "yes")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "created" {
		t.Fatalf("response = %d %q; want 201 created", resp.StatusCode, b)
	}
	if gotBody != "hello body" || gotHost != "example.test" {
		t.Errorf("backend got body %q host %q", gotBody, gotHost)
	}
	if got.Get("X-Drop-Me") != "" || got.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop request headers forwarded: %v", got)
	}
	if got.Get("X-Keep") != "yes" {
		t.Errorf("X-Keep lost: %v", got)
	}
	if xff := got.Get("X-Forwarded-For"); xff != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q; want %q", xff, "10.0.0.1, 127.0.0.1")
	}
	if got.Get("X-Forwarded-Proto") != "http" || got.Get("X-Forwarded-Host") != "example.test" {
		t.Errorf("X-Forwarded-Proto/Host = %q/%q", got.Get("X-Forwarded-Proto"), got.Get("X-Forwarded-Host"))
	}
	if resp.Header.Get("X-Secret") != "" || resp.Header.Get("X-End") != "to-end" {
		t.Errorf("response headers: %v", resp.Header)
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="proxied"}`); v != 1 {
		t.Errorf("proxied = %v; want 1", v)
	}
}

func TestPassThroughPathAndQuery(t *testing.T) {
	dir := sockDir(t)
	var uri string
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) { uri = r.RequestURI })
	px := startProxy(t, Config{Backends: []string{be.addr}})
	get(t, client(t), px.url+"/a%2Fb/c?x=1&y=%20")
	if uri != "/a%2Fb/c?x=1&y=%20" {
		t.Errorf("backend RequestURI = %q; want %q", uri, "/a%2Fb/c?x=1&y=%20")
	}
}

func TestStreamingAndTrailers(t *testing.T) {
	dir := sockDir(t)
	release := make(chan struct{})
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: two\n\n")
		w.Header().Set("X-Checksum", "abc")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	resp, err := client(t).Get(px.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The first event arrives while the backend is still blocked: nothing
	// buffers the stream.
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\ndata: two\n\n" {
		t.Errorf("rest = %q", rest)
	}
	if resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("trailer = %v; want X-Checksum: abc", resp.Trailer)
	}
}

func TestEarlyHints(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "ok")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	var hints []int
	req, _ := http.NewRequest("GET", px.url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { hints = append(hints, code); return nil },
	}))
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(hints) != 1 || hints[0] != 103 {
		t.Errorf("1xx seen = %v; want [103]", hints)
	}
	if resp.Header.Get("Link") != "" {
		t.Errorf("final response kept the hint's Link header")
	}
}

func TestLeastOutstanding(t *testing.T) {
	dir := sockDir(t)
	block := make(chan struct{})
	entered := make(chan struct{}, 10)
	slow := newTestBackend(t, dir, "slow", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
		io.WriteString(w, "slow")
	})
	fast := newTestBackend(t, dir, "fast", nil)
	px := startProxy(t, Config{Backends: []string{slow.addr, fast.addr}})
	c := client(t)
	// Park one request on whichever backend gets it first; keep asking
	// until slow holds one.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 5; i++ {
			resp, err := c.Get(px.url + "/park")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if slow.hits.Load() > 0 {
				return
			}
		}
	}()
	within(t, entered, 15*time.Second, "slow backend never got a request")
	before := slow.hits.Load()
	for i := 0; i < 20; i++ {
		_, body := get(t, c, px.url+"/x")
		if body != "backend fast\n" {
			t.Fatalf("request %d went to %q while slow had one in flight", i, body)
		}
	}
	if slow.hits.Load() != before {
		t.Errorf("slow backend got more requests while busy")
	}
	close(block)
	<-done
}

func TestRetryOnRefusedBackend(t *testing.T) {
	dir := sockDir(t)
	good := newTestBackend(t, dir, "good", nil)
	dead := "unix://" + dir + "/dead.sock" // nothing listens here
	px := startProxy(t, Config{Backends: []string{dead, good.addr}})
	c := client(t)
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", px.url+"/x", strings.NewReader("payload"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d; want 200", i, resp.StatusCode)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_retries_total{reason="connect"}`); v < 1 {
		t.Errorf("connect retries = %v; want ≥ 1", v)
	}
}

func TestBackendChangeKeepsClientConnection(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", nil)
	b := newTestBackend(t, dir, "b", nil)
	px := startProxy(t, Config{Backends: []string{a.addr}})
	c := client(t)
	var conns []string
	do := func() string {
		req, _ := http.NewRequest("GET", px.url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { conns = append(conns, ci.Conn.LocalAddr().String()) },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	if got := do(); got != "backend a\n" {
		t.Fatalf("got %q", got)
	}
	if err := px.p.SetBackends([]BackendSpec{{Addr: b.addr}}); err != nil {
		t.Fatal(err)
	}
	a.stop()
	if got := do(); got != "backend b\n" {
		t.Fatalf("after switch got %q; want backend b", got)
	}
	if err := px.p.SetBackends([]BackendSpec{{Addr: a.addr, Draining: true}, {Addr: b.addr}}); err != nil {
		t.Fatal(err)
	}
	if got := do(); got != "backend b\n" {
		t.Fatalf("with a draining got %q; want backend b", got)
	}
	for _, c := range conns[1:] {
		if c != conns[0] {
			t.Fatalf("client connection changed across backend switches: %v", conns)
		}
	}
}

func TestEarlyAnswerToAnUpload(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		// Refuse without reading the body, and don't linger for it.
		w.Header().Set("Connection", "close")
		http.Error(w, "too big for me", http.StatusRequestEntityTooLarge)
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	big := strings.Repeat("u", 8<<20)
	resp, err := client(t).Post(px.url+"/upload", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "too big for me") {
		t.Errorf("got %d %q; want the backend's own 413", resp.StatusCode, b)
	}
}

// A backend status below 100 ("099", which net/http's reader takes) is a
// backend failure: 502, no handler panic, the connection closed.
func TestBackendStatusBelow100(t *testing.T) {
	dir := sockDir(t)
	ln, err := net.Listen("unix", dir+"/odd.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			closed <- err
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			closed <- err
			return
		}
		io.WriteString(c, "HTTP/1.1 099 Odd\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = br.ReadByte()
		closed <- err
	}()
	px := startProxy(t, Config{Backends: []string{"unix://" + dir + "/odd.sock"}})
	resp, _ := get(t, client(t), px.url+"/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d; want 502", resp.StatusCode)
	}
	if err := <-closed; err != io.EOF {
		t.Errorf("backend connection: %v; want it closed by the proxy (EOF)", err)
	}
	if n := metricValue(t, px.p, "zdqueue_panics_total"); n != 0 {
		t.Errorf("%v handler panics", n)
	}
}
