package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// h2cClient speaks HTTP/2 with prior knowledge to the proxy.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Many concurrent streams on one connection, with bodies larger than
// every flow-control window both ways, arrive whole and in the right
// place; trailers pass; HEAD and 204 have no body.
func TestH2Streams(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sum":
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big":
			w.Header().Set("Content-Length", "5000000")
			w.Write(bytes.Repeat([]byte("z"), 5000000))
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		}
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c := h2cClient(t)

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{byte(i)}, 1000*i)
			resp, err := c.Post(px.url+"/sum", "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body)); string(got) != want || resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("stream %d: %s %q; want HTTP/2 %q", i, resp.Proto, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	big := bytes.Repeat([]byte("u"), 3<<20)
	resp, err := c.Post(px.url+"/sum", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %x", len(big), sha256.Sum256(big)); string(got) != want {
		t.Errorf("3 MiB upload: %q; want %q", got, want)
	}
	_, body := get(t, c, px.url+"/big")
	if len(body) != 5000000 || strings.Trim(body, "z") != "" {
		t.Errorf("5 MB download: %d bytes", len(body))
	}
	resp, body = get(t, c, px.url+"/trailer")
	if body != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("trailer: %q %v", body, resp.Trailer)
	}
	req, _ := http.NewRequest("HEAD", px.url+"/", nil)
	resp, err = c.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 2 {
		t.Errorf("HEAD: %v %v", resp, err)
	}
	if resp, body = get(t, c, px.url+"/204"); resp.StatusCode != 204 || body != "" {
		t.Errorf("204: %d %q", resp.StatusCode, body)
	}
}

// Requests over HTTP/2 are held while paused and replayed on resume, like
// HTTP/1.1 ones; a stream the client cancels while held leaves the buffer.
func TestH2HeldAndCancelled(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c := h2cClient(t)
	px.p.Pause("")
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", px.url+"/cancelled", nil)
		_, err := c.Do(req)
		gone <- err
	}()
	done := make(chan string, 1)
	go func() {
		resp, err := c.Post(px.url+"/held", "text/plain", strings.NewReader("payload"))
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	waitFor(t, "two held requests", func() bool { return held(px.p) == 2 })
	cancel()
	<-gone
	waitFor(t, "the cancelled one dropped", func() bool { return held(px.p) == 1 })
	px.p.Resume("")
	if got := <-done; got != "200 backend a\n" {
		t.Errorf("held request: %q", got)
	}
	if n := be.hits.Load(); n != 1 {
		t.Errorf("backend saw %d requests; want 1 (the cancelled one never)", n)
	}
}

// The backend's response header reaches HTTP/1.1 and HTTP/2 clients as the
// backend sent it, without its hop-by-hop fields, on every response of a
// connection (the HPACK encoder's table in step): sent directly (the
// backend's map, no copy) or copied first (a Connection header naming a
// field; a body-less answer whose head goes out after the backend
// connection is released).
func TestResponseHeaders(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Content-Type", "text/x-test")
		h["X-Multi"] = []string{"a", "b"}
		h.Set("X-Path", r.URL.Path)
		switch r.URL.Path {
		case "/named":
			h.Set("Connection", "X-Secret")
			h.Set("X-Secret", "hop")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "ok")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	for proto, c := range map[int]*http.Client{1: client(t), 2: h2cClient(t)} {
		for i := range 3 {
			for _, tc := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/named"}, {"GET", "/204"}, {"HEAD", "/"}} {
				req, _ := http.NewRequest(tc.method, px.url+tc.path, nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				h := resp.Header
				what := fmt.Sprintf("HTTP/%d round %d %s %s", proto, i, tc.method, tc.path)
				if resp.ProtoMajor != proto {
					t.Fatalf("%s: answered over %s", what, resp.Proto)
				}
				if h.Get("Content-Type") != "text/x-test" || h.Get("X-Path") != tc.path ||
					!slices.Equal(h["X-Multi"], []string{"a", "b"}) || h.Get("Date") == "" {
					t.Errorf("%s: end-to-end fields lost: %v", what, h)
				}
				for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Connection", "X-Secret"} {
					if v, ok := h[k]; ok {
						t.Errorf("%s: hop-by-hop %s: %q forwarded", what, k, v)
					}
				}
				if want := map[string]string{"/": "ok", "/named": "ok"}[tc.path]; tc.method == "GET" && string(body) != want {
					t.Errorf("%s: body %q; want %q", what, body, want)
				}
			}
		}
	}
}

// At a graceful stop an HTTP/2 client gets GOAWAY; its stream in flight
// completes.
func TestH2GracefulStop(t *testing.T) {
	dir := sockDir(t)
	slow := newGate()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		slow.wait()
		io.WriteString(w, "late")
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	t.Cleanup(slow.open)
	c := h2cClient(t)
	done := make(chan string, 1)
	go func() {
		resp, err := c.Get(px.url + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	waitFor(t, "the request in flight", func() bool { return px.p.inflight.Load() == 1 })
	stopped := make(chan struct{})
	go func() { px.stop(); close(stopped) }()
	waitFor(t, "the stop to begin", func() bool { return px.p.stopping.Load() })
	slow.open()
	if got := <-done; got != "late" {
		t.Errorf("stream in flight at stop: %q", got)
	}
	within(t, stopped, 10*time.Second, "stop did not finish after the last stream")
}

// A client that resets its stream while the backend is answering costs
// no backend connection: once the backend's whole answer is read, the
// connection goes back to the pool and the next request uses it.
func TestH2ResetKeepsBackendConnection(t *testing.T) {
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
	c := h2cClient(t)
	if _, body := get(t, c, px.url+"/"); body != "ok" {
		t.Fatalf("first request: %q", body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "GET", px.url+"/slow", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the slow request at the backend", func() bool { return be.hits.Load() == 2 })
	cancel() // RST_STREAM while the backend works
	<-done
	slow.open()
	waitFor(t, "the proxy done with it", func() bool { return px.p.inflight.Load() == 0 })
	before := backendConns(t, px.p, be.addr)
	if _, body := get(t, c, px.url+"/"); body != "ok" {
		t.Fatalf("request after the reset: %q", body)
	}
	if after := backendConns(t, px.p, be.addr); after != before || before < 1 {
		t.Errorf("idle backend connections %d before the next request, %d after; want the reset stream's connection kept and reused", before, after)
	}
}

// backendConns returns how many idle pooled connections the proxy holds
// to the backend addr.
func backendConns(t *testing.T, p *Proxy, addr string) int {
	t.Helper()
	b := p.rt.lookup(addr)
	if b == nil {
		t.Fatalf("no backend %s", addr)
	}
	b.pool.mu.Lock()
	defer b.pool.mu.Unlock()
	return len(b.pool.idle)
}
