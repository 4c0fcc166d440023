package proxy

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// WebSocket upgrades (HTTP/1.1) and RFC 8441 extended CONNECTs (HTTP/2,
// h2ws.go) go to the session relay, which terminates
// the WebSocket on both sides and moves sessions between backends at
// message boundaries (pkg/wsrelay; DESIGN.md, WebSocket across reloads).
// Other upgrades keep the byte tunnel (tunnel.go).

func (p *Proxy) newRelay() *wsrelay.Relay {
	window := p.cfg.WSResumeWindow
	if p.cfg.NoWSResume {
		window = 0
	}
	return wsrelay.New(wsrelay.Config{
		Dial:                p.wsDial,
		Logger:              p.log,
		OnMove:              func(d time.Duration) { p.m.wsMove.Observe(d.Seconds()) },
		PingInterval:        p.cfg.WSPingInterval,
		PongTimeout:         p.cfg.WSPongTimeout,
		WriteTimeout:        p.cfg.WSWriteTimeout,
		ResumeWindow:        window,
		MaxReplayPerSession: p.cfg.WSReplayPerSession,
		MaxReplayTotal:      p.cfg.WSReplayTotal,
	})
}

// wsDial connects a session to the routable backend with the fewest
// requests in flight; draining, paused and removed backends get none.
func (p *Proxy) wsDial(ctx context.Context) (net.Conn, string, error) {
	if p.opPaused.Load() {
		return nil, "", wsrelay.ErrNoBackend
	}
	b := p.rt.pick(nil)
	if b == nil {
		return nil, "", wsrelay.ErrNoBackend
	}
	var d net.Dialer
	var c net.Conn
	var err error
	if b.unix != nil {
		// A drain re-attaches thousands of sessions: no resolver per dial.
		var uc *net.UnixConn
		if uc, err = d.DialUnix(ctx, "unix", nil, b.unix); err == nil {
			c = uc
		}
	} else {
		c, err = d.DialContext(ctx, b.network, b.addr)
	}
	if err != nil {
		b.markDown(500 * time.Millisecond)
		return nil, "", &dialError{err}
	}
	return c, b.id, nil
}

// isWebSocketUpgrade reports whether r is an HTTP/1.1 WebSocket upgrade.
func isWebSocketUpgrade(r *http.Request) bool {
	up, ok := isUpgrade(r)
	return ok && strings.EqualFold(up, "websocket")
}

// serveWebSocket hands an HTTP/1.1 upgrade to the relay.
func (p *Proxy) serveWebSocket(w http.ResponseWriter, r *http.Request) string {
	setForwarded(r)
	p.ws.ServeHTTP(w, r)
	return outcomeProxied
}

// setForwarded adds to a WebSocket request's fields the X-Forwarded-*
// fields every proxied request carries (as writeForwarded does for plain
// requests): the client's address appended to X-Forwarded-For (none made
// up for a unix-socket client), X-Forwarded-Proto (https over TLS and
// HTTP/3, else http; the client's replaced) and X-Forwarded-Host. Every
// transport's WebSocket (h1 Upgrade, h2 and h3 extended CONNECT) uses it,
// so a backend cannot tell them apart.
func setForwarded(r *http.Request) {
	h := r.Header
	if ip, ok := remoteIP(r.RemoteAddr); ok {
		if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip)
		} else {
			h.Set("X-Forwarded-For", ip)
		}
	}
	if r.TLS != nil || r.ProtoMajor == 3 {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	if r.Host != "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
}

// drainSessions moves the WebSocket sessions off backend b, bounded by ctx;
// it returns how many are still attached to it.
func (p *Proxy) drainSessions(ctx context.Context, b *backend) int {
	if p.ws.Sessions(b.id) == 0 {
		return 0
	}
	start := time.Now()
	if err := p.ws.Drain(ctx, b.id); err != nil {
		p.log.Warn("WebSocket sessions not all moved", "backend", b.id, "err", err)
		return p.ws.Sessions(b.id)
	}
	p.log.Info("WebSocket sessions moved", "backend", b.id, "took", time.Since(start).Round(time.Millisecond))
	return 0
}

// wsCollector exports the relay's Stats on each scrape.
type wsCollector struct {
	p                                *Proxy
	sessions, moving, held           *prometheus.Desc
	opened, refused, moved, failed   *prometheus.Desc
	messages, bytes, closes, lostMid *prometheus.Desc
	byBackend                        *prometheus.Desc
	detached, replayHeld             *prometheus.Desc
	resumed, resumeRefused           *prometheus.Desc
}

func newWSCollector(p *Proxy) *wsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &wsCollector{
		p:        p,
		sessions: d("zdqueue_ws_sessions", "WebSocket sessions open now."),
		moving:   d("zdqueue_ws_sessions_moving", "WebSocket sessions between backends now."),
		held:     d("zdqueue_ws_held_bytes", "Client-to-backend bytes held by sessions that are moving."),
		opened:   d("zdqueue_ws_sessions_total", "WebSocket sessions opened."),
		refused:  d("zdqueue_ws_refused_total", "WebSocket handshakes refused over the session bound (503)."),
		moved:    d("zdqueue_ws_moved_total", "WebSocket sessions re-attached to another backend."),
		failed:   d("zdqueue_ws_move_failed_total", "WebSocket sessions that could not be re-attached (closed 1012 or 1013)."),
		messages: d("zdqueue_ws_messages_total", "WebSocket messages relayed, by direction.", "direction"),
		bytes:    d("zdqueue_ws_bytes_total", "WebSocket payload bytes relayed, by direction.", "direction"),
		closes:   d("zdqueue_ws_closes_total", "WebSocket sessions ended, by close code and reason (see pkg/wsrelay).", "code", "reason"),
		lostMid:  d("zdqueue_ws_lost_in_flight_total", "Backend-to-client messages cut by a backend that dropped mid-message (never delivered in part)."),
		byBackend: d("zdqueue_ws_backend_sessions", "WebSocket sessions open now by backend (slot:N, an address, or none while between backends) and client protocol (h1, h2, h3).",
			"backend", "protocol"),
		detached:      d("zdqueue_ws_sessions_detached", "Resumable WebSocket sessions whose client is away now (waiting up to --ws-resume-window)."),
		replayHeld:    d("zdqueue_ws_replay_held_bytes", "Backend-to-client bytes resumable WebSocket sessions keep for a replay."),
		resumed:       d("zdqueue_ws_resumed_total", "Resumes that attached a client connection to its session again."),
		resumeRefused: d("zdqueue_ws_resume_refused_total", "zd-resume offers refused, by reason (docs/websocket.md).", "reason"),
	}
}

func (c *wsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.moving, c.held, c.opened, c.refused, c.moved, c.failed, c.messages, c.bytes, c.closes, c.lostMid, c.byBackend, c.detached, c.replayHeld, c.resumed, c.resumeRefused} {
		ch <- d
	}
}

func (c *wsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.ws.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	n := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(c.sessions, float64(st.Sessions))
	g(c.moving, float64(st.Moving))
	g(c.held, float64(st.HeldBytes))
	n(c.opened, st.SessionsTotal)
	n(c.refused, st.Refused)
	n(c.moved, st.Moved)
	n(c.failed, st.MoveFailed)
	n(c.messages, st.MessagesToBackend, "to_backend")
	n(c.messages, st.MessagesToClient, "to_client")
	n(c.bytes, st.BytesToBackend, "to_backend")
	n(c.bytes, st.BytesToClient, "to_client")
	n(c.lostMid, st.LostInFlight)
	g(c.detached, float64(st.Detached))
	g(c.replayHeld, float64(st.ReplayHeldBytes))
	n(c.resumed, st.Resumed)
	for reason, v := range st.ResumeRefused {
		n(c.resumeRefused, v, reason)
	}
	for _, cc := range st.Closes {
		n(c.closes, cc.Count, strconv.Itoa(int(cc.Code)), cc.Reason)
	}
	labels := c.p.rt.labels()
	sum := map[[2]string]int{}
	for _, bc := range c.p.ws.Breakdown() {
		l, ok := labels[bc.Backend]
		switch {
		case bc.Backend == "":
			l = "none"
		case !ok:
			l = bc.Backend
		}
		sum[[2]string{l, bc.Transport}] += bc.Sessions
	}
	for k, v := range sum {
		g(c.byBackend, float64(v), k[0], k[1])
	}
}

// labels maps every backend's id to its metric label (slot:N or its
// address).
func (rt *router) labels() map[string]string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	m := make(map[string]string, len(rt.byID)+len(rt.gone))
	for _, b := range rt.byID {
		m[b.id] = b.metricLabel()
	}
	for _, b := range rt.gone {
		m[b.id] = b.metricLabel()
	}
	return m
}
