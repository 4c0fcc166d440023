package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zdtools/zd/pkg/queueapi"
)

// AdminHandler serves the admin endpoints:
//
//	GET  /_zero-downtime/status          Status as JSON
//	POST /_zero-downtime/test-migration  a self-test of hold and replay, and a snapshot round trip (MigrationTest)
//	POST /_zero-downtime/flush-queue     answer every held request with 503
//	POST /_zero-downtime/pause           hold new requests (?backend=ADDR for one)
//	POST /_zero-downtime/resume          replay and pass through (?backend=ADDR)
//	GET  /metrics                        Prometheus text
//	GET  /healthz                        200 "ok", or 503 "degraded: REASON" when no backend is ready
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_zero-downtime/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Status())
	})
	mux.HandleFunc("POST /_zero-downtime/flush-queue", func(w http.ResponseWriter, r *http.Request) {
		n := p.Flush()
		writeJSON(w, http.StatusOK, map[string]any{"flushed": n})
	})
	mux.HandleFunc("POST /_zero-downtime/pause", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Pause(r.URL.Query().Get("backend")); err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p.Status())
	})
	mux.HandleFunc("POST /_zero-downtime/resume", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Resume(r.URL.Query().Get("backend")); err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p.Status())
	})
	mux.HandleFunc("POST /_zero-downtime/test-migration", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		res := p.MigrationTest(ctx)
		code := http.StatusOK
		if !res.OK {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, res)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		st := p.Status()
		if st.Health == "degraded" {
			http.Error(w, "degraded: "+st.HealthReason, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// ServeAdmin serves AdminHandler on l until ctx ends.
func (p *Proxy) ServeAdmin(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           p.AdminHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          nil,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("serve admin on %s: %w", l.Addr(), err)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// SelfTest proves the hold-and-replay path on the live proxy: it holds a
// synthetic request (GET /_zero-downtime/self-test, header
// Zd-Self-Test: 1) in the buffer as if traffic were paused, checks it is
// held, releases it, and checks that a backend answered it. Real traffic is
// not paused. It needs a ready backend; any HTTP answer from the backend
// (even 404) counts as replayed.
func (p *Proxy) SelfTest(ctx context.Context) queueapi.SelfTestResult {
	var res queueapi.SelfTestResult
	step := func(f string, a ...any) { res.Steps = append(res.Steps, fmt.Sprintf(f, a...)) }
	if p.rt.routableCount() == 0 {
		res.Error = "no ready backend to replay to"
		step("no ready backend: nothing to replay to")
		return res
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/_zero-downtime/self-test", nil)
	req.Header.Set("Zd-Self-Test", "1")
	req.RemoteAddr = "127.0.0.1:0"
	rec := httptest.NewRecorder()
	body := &reqBody{size: 0}
	var st holdState
	defer st.done()

	// A private gate stands in for a pause so that live traffic keeps
	// flowing: the request goes through the real buffer, held by a pause of
	// a backend id no real backend has.
	gate := fmt.Sprintf("self-test-%d", time.Now().UnixNano())
	p.q.PauseBackend(gate)
	defer p.q.DropBackend(gate)
	start := time.Now()
	// The hold ends with ctx at the latest (it is the request's context),
	// so waiting for it on the way out is bounded.
	done := make(chan struct{ ok bool }, 1)
	var holdWG sync.WaitGroup
	holdWG.Add(1)
	go func() {
		defer holdWG.Done()
		_, ok := p.hold(rec, req, body, &st, gate)
		done <- struct{ ok bool }{ok}
	}()
	defer holdWG.Wait()
	// Wait until the buffer reports it held.
	for p.q.Stats().HeldByBackend[gate] == 0 {
		select {
		case <-ctx.Done():
			res.Error = "the synthetic request was never held"
			return res
		case r := <-done:
			res.Error = "the buffer refused the synthetic request: " + rec.Body.String()
			_ = r
			return res
		case <-time.After(time.Millisecond):
		}
	}
	step("held a synthetic GET /_zero-downtime/self-test in the buffer")
	res.HeldMS = float64(time.Since(start).Microseconds()) / 1000
	rel := time.Now()
	p.q.ResumeBackend(gate)
	step("resumed: released it for replay")
	r := <-done
	if !r.ok {
		res.Error = "released, but not replayed: " + rec.Body.String()
		return res
	}
	b := p.rt.pick(nil)
	if b == nil {
		res.Error = "released, but no ready backend any more"
		return res
	}
	a := p.forward(rec, req, b, body, true)
	res.ReplayedMS = float64(time.Since(rel).Microseconds()) / 1000
	res.Backend = b.id
	if a.outcome == "" || a.outcome == outcomeBackendError {
		res.Error = "replay to " + b.id + " failed: " + rec.Body.String()
		return res
	}
	res.Status = rec.Code
	step("replayed to %s: HTTP %d", b.id, rec.Code)
	res.OK = true
	return res
}
