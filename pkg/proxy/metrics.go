package proxy

import (
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// metrics are the proxy's Prometheus series, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	retries  *prometheus.CounterVec
	badInput *prometheus.CounterVec
	latency  prometheus.Histogram
	tunnels  prometheus.Gauge
	wsMove   prometheus.Histogram
	panics   prometheus.Counter
	outcome  map[string]prometheus.Counter // read-only after newMetrics: no lock per request
	pinned   map[string]prometheus.Counter // by result; read-only after newMetrics
}

func newMetrics(p *Proxy) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), outcome: map[string]prometheus.Counter{}, pinned: map[string]prometheus.Counter{}}
	pinned := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zdqueue_pinned_requests_total",
		Help: "Requests with a pin header, by result: routed (to the backend named), held (held for a paused backend; also counted in its final result), unknown (named no ready or paused backend; routed anywhere), unpinned (its backend was drained, removed or refused; served elsewhere), invalid (malformed header; 400).",
	}, []string{"result"})
	for _, r := range []string{pinRouted, pinHeld, pinUnknown, pinUnpinned, pinInvalid} {
		m.pinned[r] = pinned.WithLabelValues(r)
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zdqueue_requests_total",
		Help: "Client requests by outcome: proxied, replayed (answered after being held), overflow, evicted, expired, flushed, shutdown, too_large, no_backend, backend_error, client_gone, bad_request.",
	}, []string{"outcome"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zdqueue_retries_total",
		Help: "Requests sent again: connect (refused before any byte was sent; another backend), stale_connection (an idempotent request on a pooled connection the backend had just closed; a fresh connection) or idempotent (GET/HEAD whose backend failed before answering, with --retry-idempotent; another backend).",
	}, []string{"reason"})
	m.badInput = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zdqueue_bad_input_total",
		Help: "Client input refused before it reached a backend: malformed (400, 501, 505, or a request line that is not HTTP/1.x, closed unanswered), header_too_large (431), timeout (slow headers or idle), body (a malformed or slow request body), tls (handshake failure), h2_protocol (HTTP/2 connection and stream errors).",
	}, []string{"kind"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "zdqueue_request_duration_seconds",
		Help:    "Time from request headers to the end of the response, held time included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.tunnels = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "zdqueue_upgraded_connections",
		Help: "HTTP/1.1 connections switched to another protocol (WebSocket) and relayed now.",
	})
	m.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "zdqueue_panics_total",
		Help: "Panics recovered while serving a request (bugs; each is logged at error level).",
	})
	for _, o := range []string{outcomeProxied, outcomeReplayed, outcomeOverflow, outcomeEvicted, outcomeExpired,
		outcomeFlushed, outcomeShutdown, outcomeTooLarge, outcomeNoBackend, outcomeBackendError, outcomeClientGone, outcomeBadRequest} {
		m.outcome[o] = m.requests.WithLabelValues(o)
	}
	for _, r := range []string{"connect", "stale_connection", "idempotent"} {
		m.retries.WithLabelValues(r)
	}
	for _, k := range []string{"malformed", "header_too_large", "timeout", "body", "tls", "h2_protocol"} {
		m.badInput.WithLabelValues(k)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	m.wsMove = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "zdqueue_ws_move_seconds",
		Help:    "How long a WebSocket session's client-to-backend messages were held while it moved to another backend.",
		Buckets: wsrelay.MoveBuckets,
	})
	m.reg.MustRegister(m.wsMove, newWSCollector(p))
	m.reg.MustRegister(pinned, m.requests, m.retries, m.badInput, m.latency, m.tunnels, m.panics,
		gauge("zdqueue_buffered_requests", "Requests held in the buffer now.", func() float64 { return float64(p.q.Stats().Held) }),
		gauge("zdqueue_buffer_bytes", "Bytes held in the buffer now, as charged against the byte limit.", func() float64 { return float64(p.q.Stats().Bytes) }),
		gauge("zdqueue_paused", "1 while requests are held (operator pause or no ready backend).", func() float64 { return b2f(p.q.Paused()) }),
		gauge("zdqueue_active_connections", "Client connections open now.", func() float64 { return float64(p.activeConns.Load()) }),
		gauge("zdqueue_requests_in_flight", "Client requests being handled now, held ones included.", func() float64 { return float64(p.inflight.Load()) }),
		counter("zdqueue_replayed_total", "Held requests released to a backend.", func() float64 { return float64(p.q.Stats().ReplayedTotal) }),
		counter("zdqueue_evicted_total", "Held requests evicted by the oldest overflow strategy.", func() float64 { return float64(p.q.Stats().Rejected["evicted"]) }),
		counter("zdqueue_expired_total", "Held requests that outlived the age limit.", func() float64 { return float64(p.q.Stats().Rejected["expired"]) }),
		&backendCollector{p: p},
		// With the scheduler's own figures: go_sched_latencies_seconds (how
		// long runnable goroutines waited to run) is how to tell a stall of
		// zd-queue's from one of the network or the app (docs/operations.md).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// backendCollector reports per-backend state and load at scrape time. A
// worker's series are labelled by its slot (backend="slot:N"), not by its
// socket, whose name changes with every generation: a reload must not start
// new series. Other backends are labelled by their address.
type backendCollector struct{ p *Proxy }

var (
	descBackendUp = prometheus.NewDesc("zdqueue_backend_state",
		"Backends of the slot (or address) in each state now: ready, paused, draining, down (refused recently) or removed (finishing its requests).",
		[]string{"backend", "state"}, nil)
	descBackendInFlight = prometheus.NewDesc("zdqueue_backend_in_flight",
		"Requests in flight on the slot's (or address's) backends.", []string{"backend"}, nil)
	descBackendServed = prometheus.NewDesc("zdqueue_backend_requests_total",
		"Requests the slot's (or address's) backends finished, across reloads.", []string{"backend"}, nil)
	descBackendHeld = prometheus.NewDesc("zdqueue_backend_held_requests",
		"Requests pinned to the slot's (or address's) backends and held in the buffer now.", []string{"backend"}, nil)
)

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBackendUp
	ch <- descBackendInFlight
	ch <- descBackendServed
	ch <- descBackendHeld
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	held := c.p.q.Stats().HeldByBackend
	for _, g := range c.p.rt.metricGroups(held) {
		ch <- prometheus.MustNewConstMetric(descBackendHeld, prometheus.GaugeValue, float64(g.held), g.label)
		for _, st := range g.states {
			ch <- prometheus.MustNewConstMetric(descBackendUp, prometheus.GaugeValue, float64(st.n), g.label, st.name)
		}
		ch <- prometheus.MustNewConstMetric(descBackendInFlight, prometheus.GaugeValue, float64(g.inFlight), g.label)
		ch <- prometheus.MustNewConstMetric(descBackendServed, prometheus.CounterValue, float64(g.served), g.label)
	}
}

// metricGroup is what the backends sharing one metric label add up to.
type metricGroup struct {
	label          string
	held, inFlight int64
	served         uint64
	states         []stateCount
}

type stateCount struct {
	name string
	n    int
}

// metricLabel is b's backend label: slot:N for a worker from the table,
// else its address. Call with the router's lock held (slot and worker are
// set under it).
func (b *backend) metricLabel() string {
	if b.worker {
		return "slot:" + strconv.Itoa(b.slot)
	}
	return b.id
}

// metricGroups sums the backends (current, finishing and forgotten) by
// metric label, in label order.
func (rt *router) metricGroups(held map[string]int) []*metricGroup {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	byLabel := map[string]*metricGroup{}
	group := func(label string) *metricGroup {
		g := byLabel[label]
		if g == nil {
			g = &metricGroup{label: label}
			byLabel[label] = g
		}
		return g
	}
	add := func(b *backend) {
		g := group(b.metricLabel())
		g.held += int64(held[b.id])
		g.inFlight += b.outstanding.Load()
		g.served += b.served.Load()
		name := b.stateName()
		for i := range g.states {
			if g.states[i].name == name {
				g.states[i].n++
				return
			}
		}
		g.states = append(g.states, stateCount{name, 1})
	}
	for _, b := range rt.byID {
		add(b)
	}
	for _, b := range rt.gone {
		add(b)
	}
	for label, n := range rt.retired {
		group(label).served += n
	}
	out := make([]*metricGroup, 0, len(byLabel))
	for _, g := range byLabel {
		sort.Slice(g.states, func(i, j int) bool { return g.states[i].name < g.states[j].name })
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].label < out[j].label })
	return out
}
