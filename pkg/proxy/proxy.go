package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zdtools/zd/pkg/queue"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/wsrelay"
)

// Proxy is zd-queue's engine. Create it with New, serve clients with Serve
// (or use it as an http.Handler), and Close it when done.
type Proxy struct {
	cfg Config
	log *slog.Logger
	rt  *router
	q   *queue.Buffer
	m   *metrics
	ws  *wsrelay.Relay // WebSocket sessions (websocket.go)

	opPaused    atomic.Bool  // an operator paused all traffic
	stopping    atomic.Bool  // graceful stop: answer with Connection: close
	reading     atomic.Int64 // body bytes being read into memory for holding
	activeConns atomic.Int64
	conns       connRegistry // every client connection (registry.go)
	h3conns     atomic.Int64 // HTTP/3 connections registered (h3ConnContext)
	h3ws        wsSessions   // WebSocket sessions on HTTP/3 streams
	h2ws        wsSessions   // WebSocket sessions on HTTP/2 streams
	inflight    atomic.Int64
	heldSeq     atomic.Uint64 // numbers held requests, for snapshots (snapshot.go)
	altSvc      atomic.Pointer[string]
	addrs       atomic.Pointer[[]string] // what Serve listens on, for status
	started     time.Time

	mu          sync.Mutex
	pausedSince time.Time
	lastTable   tableInfo
	tablePath   string // the worker table WatchTable follows; "" for none

	force     chan struct{} // closed by ForceStop
	work      chan task     // idle workers take streams and connections here (workers.go)
	forceOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// tableInfo is what the proxy last read from a worker table.
type tableInfo struct {
	Path       string
	Generation int
	Health     string
	Loaded     time.Time
}

// New returns a Proxy for cfg. It fails when a backend address is invalid.
func New(cfg Config) (*Proxy, error) {
	cfg.SetDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		rt:      newRouter(&cfg),
		q:       queue.New(cfg.Limits),
		started: time.Now(),
		ctx:     ctx,
		cancel:  cancel,
		force:   make(chan struct{}),
		work:    make(chan task),
	}
	p.ws = p.newRelay()
	p.m = newMetrics(p)
	specs := make([]BackendSpec, 0, len(cfg.Backends))
	for _, a := range cfg.Backends {
		specs = append(specs, BackendSpec{Addr: a})
	}
	if err := p.rt.set(specs); err != nil {
		p.q.Close()
		cancel()
		return nil, fmt.Errorf("backends: %w", err)
	}
	p.syncQueue()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.housekeep(ctx)
	}()
	return p, nil
}

// Close answers every held request with 503 (shutdown), stops background
// work and closes the backend pools. Requests in flight are not touched.
func (p *Proxy) Close() error {
	p.q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace+time.Second)
	if err := p.ws.Close(ctx); err != nil {
		p.log.Warn("WebSocket sessions did not all close", "err", err)
	}
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), h3FinishTimeout+time.Second)
	if left := p.h3ws.wait(ctx); left > 0 {
		p.log.Warn("HTTP/3 WebSocket streams still open after their sessions ended", "count", left)
	}
	cancel()
	p.cancel()
	p.wg.Wait()
	p.rt.close()
	return nil
}

func (p *Proxy) listeners() []string {
	if a := p.addrs.Load(); a != nil {
		return *a
	}
	return []string{}
}

// ForceStop cuts a graceful stop short: Serve closes every client
// connection at once instead of waiting out ShutdownGrace.
func (p *Proxy) ForceStop() { p.forceOnce.Do(func() { close(p.force) }) }

// housekeep closes the pools of removed backends once they are idle, and
// keeps the buffer's pause state in step with the backends' health.
func (p *Proxy) housekeep(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.rt.reap()
			p.syncQueue()
		}
	}
}

// SetBackends replaces the backend set (see BackendSpec). Requests in flight
// finish where they are; new ones go to the new set at once.
func (p *Proxy) SetBackends(specs []BackendSpec) error {
	before := p.rt.all()
	if err := p.rt.set(specs); err != nil {
		return err
	}
	// A removed backend with nothing in flight is forgotten by set at
	// once: look at the set from before too.
	p.dropGoneBackends(before)
	p.syncQueue()
	return nil
}

// dropGoneBackends unpins the requests held for backends that are draining
// or removed (the current ones, and those in also), so they go to any ready
// backend instead of waiting for one that will never take them.
func (p *Proxy) dropGoneBackends(also []*backend) {
	for _, b := range append(p.rt.all(), also...) {
		if b.draining.Load() || b.removed.Load() {
			if n := p.q.DropBackend(b.id); n > 0 {
				p.log.Info("backend gone: its held pinned requests go to any backend", "backend", b.id, "count", n)
			}
		}
	}
}

// syncQueue pauses the buffer while requests must be held and resumes it
// (starting the paced replay) when a backend can take them.
func (p *Proxy) syncQueue() {
	p.mu.Lock()
	defer p.mu.Unlock()
	hold := p.holding()
	if hold == p.q.Paused() {
		return
	}
	if hold {
		p.q.Pause()
		p.pausedSince = time.Now()
		p.log.Info("holding requests", "operator_paused", p.opPaused.Load(), "routable_backends", p.rt.routableCount())
	} else {
		p.q.Resume()
		p.log.Info("replaying held requests", "held_for", time.Since(p.pausedSince).Round(time.Millisecond))
	}
}

// Pause holds every new request (and requests for backend, when it is not
// empty, go to other backends meanwhile) until Resume.
func (p *Proxy) Pause(backend string) error {
	if backend == "" {
		p.opPaused.Store(true)
		p.syncQueue()
		return nil
	}
	b := p.rt.lookup(backend)
	if b == nil {
		return fmt.Errorf("pause backend %s: %w", backend, ErrUnknownBackend)
	}
	// The buffer first: a request that sees the backend paused must find
	// its buffer paused too.
	p.q.PauseBackend(b.id)
	b.paused.Store(true)
	p.rt.poke()
	p.syncQueue()
	return nil
}

// Resume ends Pause (for backend, also ends a drain), replaying held
// requests in priority order.
func (p *Proxy) Resume(backend string) error {
	if backend == "" {
		p.opPaused.Store(false)
		p.syncQueue()
		return nil
	}
	b := p.rt.lookup(backend)
	if b == nil {
		return fmt.Errorf("resume backend %s: %w", backend, ErrUnknownBackend)
	}
	b.paused.Store(false)
	b.draining.Store(false)
	p.q.ResumeBackend(b.id)
	p.rt.poke()
	p.syncQueue()
	return nil
}

// Flush answers every held request with 503 + Retry-After and returns how
// many there were.
func (p *Proxy) Flush() int { return p.q.Flush() }

// Drain stops giving backend new requests and waits until it has none in
// flight and its WebSocket sessions moved to other backends, or until
// timeout. A drained backend stays out of routing until it
// leaves the backend set or Resume(backend) is called. An unknown backend
// is an error wrapping ErrUnknownBackend: a mistyped address must not pass
// for a drained one.
func (p *Proxy) Drain(ctx context.Context, backend string, timeout time.Duration) (queueapi.DrainResult, error) {
	start := time.Now()
	b := p.rt.lookup(backend)
	if b == nil {
		if _, _, _, err := ParseBackend(backend); err != nil {
			return queueapi.DrainResult{}, err
		}
		return queueapi.DrainResult{}, fmt.Errorf("drain backend %s: %w", backend, ErrUnknownBackend)
	}
	b.draining.Store(true)
	p.rt.poke()
	p.dropGoneBackends(nil)
	p.syncQueue()
	res := queueapi.DrainResult{Backend: b.id}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		n := b.outstanding.Load()
		if n == 0 {
			res.Drained = true
			break
		}
		select {
		case <-ctx.Done():
			res.InFlight = n
			res.WaitedMS = time.Since(start).Milliseconds()
			p.log.Warn("drain timed out", "backend", b.id, "in_flight", n)
			return res, nil
		case <-t.C:
		}
	}
	// Its WebSocket sessions move to other backends (the barrier), within
	// the same bound.
	if n := p.drainSessions(ctx, b); n > 0 {
		res.Drained = false
		res.Sessions = n
		res.WaitedMS = time.Since(start).Milliseconds()
		return res, nil
	}
	res.WaitedMS = time.Since(start).Milliseconds()
	p.log.Info("backend drained", "backend", b.id, "waited", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// ServeHTTP proxies one client request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serve(w, r, time.Now()) }

// serve proxies one client request that began at start (the fast path
// shares its clock reading with the connection registry).
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, start time.Time) {
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	if r.TLS == nil && p.cfg.TLS != nil && r.ProtoMajor == 1 {
		// Handed over by the fast path after the TLS handshake.
		if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
			r.TLS = st
		}
	}
	if alt := p.altSvc.Load(); alt != nil && r.ProtoMajor < 3 {
		w.Header().Set("Alt-Svc", *alt)
	}
	if p.stopping.Load() && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	var rec *statusRecorder
	if p.cfg.AccessLog != nil {
		w, rec = record(w)
	}
	outcome := p.handle(w, r)
	if c := p.m.outcome[outcome]; c != nil {
		c.Inc()
	}
	p.m.latency.Observe(time.Since(start).Seconds())
	if rec != nil {
		p.cfg.AccessLog.log(r, rec, start, outcome)
	}
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) string {
	if r.ProtoMajor == 1 && isWebSocketUpgrade(r) {
		return p.serveWebSocket(w, r)
	}
	if isH3ExtendedConnect(r) {
		return p.serveH3WebSocket(w, r)
	}
	if r.Method == http.MethodConnect {
		if isExtendedConnect(r) {
			return p.serveExtendedConnect(w, r)
		}
		p.plainError(w, http.StatusMethodNotAllowed, "CONNECT is not proxied")
		return outcomeBadRequest
	}
	body := &reqBody{size: r.ContentLength}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body.src = r.Body
		if r.ContentLength < 0 && r.ProtoMajor >= 2 && usuallyBodiless(r.Method) {
			body.src = peekEmpty(r.Body)
		}
	}
	pin, pinned, ok := p.takePin(r)
	if !ok {
		p.m.pinned[pinInvalid].Inc()
		p.plainError(w, http.StatusBadRequest, "malformed "+p.cfg.PinHeader+" header: want one backend address (unix:///path, tcp://host:port) or slot:N")
		return outcomeBadRequest
	}
	var pb *backend // the backend the request is pinned to, while it is
	if pinned {
		if pb = p.rt.resolvePin(pin); pb == nil {
			p.m.pinned[pinUnknown].Inc()
		}
	}
	var st holdState
	defer st.done()
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	attempts := 0
	replayed := false
	for {
		if pb != nil && (pb.draining.Load() || pb.removed.Load()) {
			// Drained or removed while the request waited: any backend will do.
			p.m.pinned[pinUnpinned].Inc()
			pb = nil
		}
		if pb != nil {
			if !p.opPaused.Load() && pb.routable() {
				a := p.forward(w, r, pb, body, replayed)
				if !a.retry {
					p.m.pinned[pinRouted].Inc()
					return a.outcome
				}
				attempts++
				if a.again && attempts <= p.cfg.MaxRetries {
					continue // a stale pooled connection: the same backend again
				}
				// Refused before any byte was sent: serve it elsewhere.
				p.m.pinned[pinUnpinned].Inc()
				tried = append(tried, pb)
				pb = nil
				continue
			}
			// Paused (the backend or everything): wait in its buffer.
			if st.holds == 0 {
				p.m.pinned[pinHeld].Inc()
			}
			outcome, ok := p.hold(w, r, body, &st, pb.id)
			if !ok {
				return outcome
			}
			replayed = true
			continue
		}
		if !p.opPaused.Load() {
			if b := p.rt.pick(tried); b != nil {
				a := p.forward(w, r, b, body, replayed)
				if !a.retry {
					return a.outcome
				}
				attempts++
				if !a.again {
					tried = append(tried, b)
				}
				if attempts <= p.cfg.MaxRetries && p.rt.pick(tried) != nil {
					continue
				}
			}
		}
		if !body.untouched() {
			p.plainError(w, http.StatusBadGateway, "backend failed while the request body was being sent")
			return outcomeBackendError
		}
		if p.cfg.NoAutoBuffer && !p.opPaused.Load() {
			w.Header().Set("Retry-After", "1")
			p.plainError(w, http.StatusServiceUnavailable, "no backend is ready")
			return outcomeNoBackend
		}
		outcome, ok := p.hold(w, r, body, &st, "")
		if !ok {
			return outcome
		}
		replayed = true
		tried = tried[:0]
		attempts = 0
	}
}

// usuallyBodiless reports whether requests of method m hardly ever carry a
// body.
func usuallyBodiless(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// peekEmpty returns nil when body is empty, else a reader of all of it.
// HTTP/2 and HTTP/3 requests may end their stream after the headers without
// saying so up front; forwarding such a GET as chunked would confuse
// backends that don't read chunked request bodies.
func peekEmpty(body io.ReadCloser) io.ReadCloser {
	var one [1]byte
	n, err := body.Read(one[:])
	if n == 0 && err == io.EOF {
		return nil
	}
	rest := io.Reader(body)
	if err != nil && err != io.EOF {
		rest = errReader{err}
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(one[:n]), rest), body}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
