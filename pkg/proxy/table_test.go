package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/workertable"
)

func TestWorkerTableDrivesBackends(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", nil)
	b := newTestBackend(t, dir, "b", nil)
	path := filepath.Join(dir, "workers.msgpack")
	store := func(gen int, ws ...workertable.Worker) { t.Helper(); storeTable(t, path, gen, ws...) }
	store(1, workertable.Worker{Slot: 1, Generation: 1, PID: 11, State: workertable.StateReady, Backend: a.addr},
		workertable.Worker{Slot: 1, Generation: 2, PID: 12, State: workertable.StateStarting, Backend: b.addr})
	px := startProxy(t, Config{})
	watchTable(t, px.p, path)
	c := client(t)
	waitFor(t, "backend a routable", func() bool { return px.p.rt.routableCount() == 1 })
	if _, body := get(t, c, px.url); body != "backend a\n" {
		t.Fatalf("generation 1: %q", body)
	}
	// Blue-green flip: b ready, a draining. New requests go to b only.
	store(2, workertable.Worker{Slot: 1, Generation: 1, PID: 11, State: workertable.StateDraining, Backend: a.addr},
		workertable.Worker{Slot: 1, Generation: 2, PID: 12, State: workertable.StateReady, Backend: b.addr})
	waitFor(t, "table generation 2", func() bool {
		st := px.p.Status()
		return st.Table != nil && st.Table.Generation == 2
	})
	for i := 0; i < 5; i++ {
		if _, body := get(t, c, px.url); body != "backend b\n" {
			t.Fatalf("generation 2: %q", body)
		}
	}
	// The old worker leaves the table: it is forgotten.
	store(3, workertable.Worker{Slot: 1, Generation: 2, PID: 12, State: workertable.StateReady, Backend: b.addr})
	waitFor(t, "a forgotten", func() bool { return len(px.p.Status().Backends) == 1 })
	if st := px.p.Status(); st.Backends[0].PID != 12 || st.Backends[0].Generation != 2 {
		t.Errorf("status backends = %+v", st.Backends)
	}
}

// TestStalePooledConnection: a backend that closes idle keep-alive
// connections soon after answering (without saying Connection: close) must
// not cost a request, POSTs included.
func TestStalePooledConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srvDone := make(chan struct{})
	closed := make(chan struct{}, 1000) // one per connection the backend let go
	go func() {
		defer close(srvDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				select { // an idle timeout of 5ms
				case <-time.After(5 * time.Millisecond):
				case <-stop:
				}
				c.Close()
				select {
				case closed <- struct{}{}:
				default:
				}
			}()
		}
	}()
	defer func() { close(stop); ln.Close(); <-srvDone }()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // a TCP backend that refuses
	px := startProxy(t, Config{Backends: []string{"tcp://" + ln.Addr().String(), "tcp://" + deadAddr}})
	c := client(t)
	// POSTs after the backend let the connection go: the liveness check
	// before reuse sees it closed and dials afresh.
	for i := 0; i < 10; i++ {
		resp, err := c.Post(px.url, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, b)
		}
		within(t, closed, 10*time.Second, "backend never closed its connection") // the backend has closed the pooled connection
		time.Sleep(2 * time.Millisecond)                                         // the connection is idle in the pool for a while, as in life
	}
	// GETs back to back race the backend's close; they are idempotent and
	// are resent when the race is lost.
	for i := 0; i < 50; i++ {
		if r, body := get(t, c, px.url); r.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q", i, r.StatusCode, body)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="backend_error"}`); v != 0 {
		t.Errorf("backend errors = %v; want 0", v)
	}
}

// A worker table whose folder or file is missing leaves zd-queue with no
// backends; its health says why, and the table is picked up once it appears.
func TestWorkerTableMissingIsExplained(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", nil)
	stateDir := filepath.Join(dir, "st")
	path := filepath.Join(stateDir, "workers.msgpack")
	px := startProxy(t, Config{})
	watchTable(t, px.p, path)
	waitFor(t, "the table path known", func() bool { return strings.Contains(px.p.Status().HealthReason, "worker table") })
	if st := px.p.Status(); st.Health != "degraded" || !strings.Contains(st.HealthReason, "its folder "+stateDir+" does not exist") {
		t.Errorf("no folder: health %q, reason %q", st.Health, st.HealthReason)
	}
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if st := px.p.Status(); !strings.Contains(st.HealthReason, path+" does not exist yet") {
		t.Errorf("no file: reason %q", st.HealthReason)
	}
	rec := httptest.NewRecorder()
	px.p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if body := rec.Body.String(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "degraded: no backend is ready: no worker table: "+path+" does not exist yet") {
		t.Errorf("/healthz = %d %q", rec.Code, body)
	}
	if err := workertable.Store(path, &workertable.Table{Generation: 1, Health: workertable.HealthHealthy,
		Workers: []workertable.Worker{{Slot: 0, Generation: 1, PID: 1, State: workertable.StateReady, Backend: a.addr}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the table applied", func() bool { return px.p.Status().Health == "healthy" })
	if st := px.p.Status(); st.HealthReason != "" {
		t.Errorf("healthy with reason %q", st.HealthReason)
	}
}

// Workers' series are labelled by slot: a reload to a new generation (a new
// socket) keeps the same series, and the slot's request counter goes on
// counting instead of starting again.
func TestBackendMetricsKeepSlotLabels(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", nil)
	b := newTestBackend(t, dir, "b", nil)
	path := filepath.Join(dir, "workers.msgpack")
	store := func(gen int, ws ...workertable.Worker) { t.Helper(); storeTable(t, path, gen, ws...) }
	store(1, workertable.Worker{Slot: 0, Generation: 1, PID: 11, State: workertable.StateReady, Backend: a.addr})
	px := startProxy(t, Config{})
	watchTable(t, px.p, path)
	c := client(t)
	waitFor(t, "generation 1", func() bool { return px.p.rt.routableCount() == 1 })
	for i := 0; i < 3; i++ {
		get(t, c, px.url)
	}
	if v := metricValue(t, px.p, `zdqueue_backend_requests_total{backend="slot:0"}`); v != 3 {
		t.Errorf("slot 0 served %v after 3 requests; want 3", v)
	}
	store(2, workertable.Worker{Slot: 0, Generation: 2, PID: 12, State: workertable.StateReady, Backend: b.addr})
	// One backend was listed before the new table too: wait for it to be b.
	waitFor(t, "a forgotten", func() bool {
		bs := px.p.Status().Backends
		return len(bs) == 1 && bs[0].Addr == b.addr
	})
	for i := 0; i < 2; i++ {
		if _, body := get(t, c, px.url); body != "backend b\n" {
			t.Fatalf("generation 2: %q", body)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_backend_requests_total{backend="slot:0"}`); v != 5 {
		t.Errorf("slot 0 served %v after 5 requests over two generations; want 5", v)
	}
	if v := metricValue(t, px.p, `zdqueue_backend_state{backend="slot:0",state="ready"}`); v != 1 {
		t.Errorf("slot 0 ready = %v; want 1", v)
	}
	mfs, err := px.p.m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "backend" && l.GetValue() != "slot:0" {
					t.Errorf("%s has backend=%q; want only slot:0", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}

// storeTable writes a healthy worker table of generation gen to path.
func storeTable(t *testing.T, path string, gen int, ws ...workertable.Worker) {
	t.Helper()
	if err := workertable.Store(path, &workertable.Table{Generation: gen, Health: workertable.HealthHealthy, Workers: ws}); err != nil {
		t.Fatal(err)
	}
}

// watchTable runs p.WatchTable on path until the test ends, and fails the
// test if it returned an error.
func watchTable(t *testing.T, p *Proxy, path string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.WatchTable(ctx, path) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchTable: %v", err)
		}
	})
}
