package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("ZD_PROXY_CHILD"); mode != "" {
		os.Exit(runChild(mode)) // a benchmark's backend or clients
	}
	goleak.VerifyTestMain(m)
}

// testBackend is a real HTTP/1.1 server on a unix socket (or TCP) that
// records what reached it.
type testBackend struct {
	t     *testing.T
	addr  string // unix:///path or tcp://host:port
	srv   *http.Server
	ln    net.Listener
	hits  atomic.Int64
	mu    sync.Mutex
	order []string // X-Seq of requests, in arrival order
	h     http.HandlerFunc
}

func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "zdq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// newBackend starts a backend on a unix socket named name under dir. h may
// be nil for the default: 200 "backend NAME" with the request's X-Seq
// recorded.
func newTestBackend(t *testing.T, dir, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	path := filepath.Join(dir, name+".sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return startBackend(t, ln, "unix://"+path, name, h)
}

func startBackend(t *testing.T, ln net.Listener, addr, name string, h http.HandlerFunc) *testBackend {
	tb := &testBackend{t: t, addr: addr, ln: ln, h: h}
	tb.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.hits.Add(1)
		if s := r.Header.Get("X-Seq"); s != "" {
			tb.mu.Lock()
			tb.order = append(tb.order, s)
			tb.mu.Unlock()
		}
		if tb.h != nil {
			tb.h(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "backend %s\n", name)
	})}
	go tb.srv.Serve(ln)
	t.Cleanup(tb.stop)
	return tb
}

func (tb *testBackend) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tb.srv.Shutdown(ctx)
}

func (tb *testBackend) seqs() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.order...)
}

// gate holds backend handlers until it is opened. Open it in a cleanup
// registered after startProxy (cleanups run last first), so a test that
// fails early does not leave the stops waiting on a held handler.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) wait() { <-g.ch }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// running is a proxy serving on a TCP port for a test.
type running struct {
	p    *Proxy
	url  string
	addr string
	stop func()
}

func startProxy(t *testing.T, cfg Config) *running {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, Listeners{TCP: []net.Listener{ln}}) }()
	var once sync.Once
	r := &running{p: p, url: "http://" + ln.Addr().String(), addr: ln.Addr().String()}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			p.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// client returns an HTTP/1.1 client with its own keep-alive pool, closed at
// the end of the test.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// within waits for ch to deliver (or be closed) for at most d, failing the
// test with what as the reason after that.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatal(what)
		panic("unreachable")
	}
}

// metric returns the value of a sample line in /metrics text, e.g.
// `zdqueue_requests_total{outcome="proxied"}`, or -1.
func metricValue(t *testing.T, p *Proxy, series string) float64 {
	t.Helper()
	mfs, err := p.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name, labels, _ := strings.Cut(series, "{")
	labels = strings.TrimSuffix(labels, "}")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, want := range strings.Split(labels, ",") {
				if want == "" {
					continue
				}
				k, v, _ := strings.Cut(want, "=")
				v = strings.Trim(v, `"`)
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func benchDir(b *testing.B) (string, func()) {
	d, err := os.MkdirTemp("", "zdqb")
	if err != nil {
		b.Fatal(err)
	}
	return d, func() { os.RemoveAll(d) }
}
