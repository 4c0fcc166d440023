package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// Listeners are the client-side sockets Serve answers on.
type Listeners struct {
	// TCP listeners speak HTTP/1.1 and h2c, or (with Config.TLS) HTTP/1.1
	// and h2 chosen by ALPN.
	TCP []net.Listener
	// UDP sockets speak HTTP/3 (needs Config.TLS). Clients on TCP are told
	// about them with Alt-Svc.
	UDP []net.PacketConn
}

func (p *Proxy) tunnelStop() <-chan struct{} { return p.ctx.Done() }

// Serve answers clients on ls until ctx ends, then stops gracefully: it
// stops accepting, answers requests still arriving on open HTTP/1.1
// connections with Connection: close, sends HTTP/2 and HTTP/3 GOAWAY, and
// waits (at most Config.ShutdownGrace) for requests in flight. It returns
// nil after a graceful stop, or the first error that stopped a listener.
func (p *Proxy) Serve(ctx context.Context, ls Listeners) error {
	if len(ls.UDP) > 0 && p.cfg.TLS == nil {
		return errors.New("serve HTTP/3: needs a TLS certificate and key")
	}
	errLog := slog.NewLogLogger(&badInputHandler{p: p, next: p.log.Handler()}, slog.LevelDebug)
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.serveNetHTTP),
		ConnState:         netHTTPConnState,
		ConnContext:       netHTTPConnContext,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 250,
			MaxReadFrameSize:     1 << 20,
		},
	}
	srv.Protocols.SetHTTP1(true)
	if p.cfg.TLS != nil {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = p.cfg.TLS.Clone()
		if len(srv.TLSConfig.NextProtos) == 0 {
			srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.Handler = h2cUpgrade(srv.Handler, srv)
	}

	var h3 *http3.Server
	if len(ls.UDP) > 0 {
		h3 = &http3.Server{
			Handler:        http.HandlerFunc(p.serveH3),
			ConnContext:    p.h3ConnContext,
			TLSConfig:      http3.ConfigureTLSConfig(p.cfg.TLS.Clone()),
			QUICConfig:     p.h3QUICConfig(),
			MaxHeaderBytes: p.cfg.MaxHeaderBytes,
			IdleTimeout:    p.cfg.IdleTimeout,
			Logger:         p.log,
		}
		if port := udpPort(ls.UDP[0]); port > 0 {
			alt := fmt.Sprintf(`h3=":%d"; ma=86400`, port)
			p.altSvc.Store(&alt)
		}
	}

	var addrs []string
	for _, l := range ls.TCP {
		kind := l.Addr().Network()
		if p.cfg.TLS != nil {
			kind = "tls"
		}
		addrs = append(addrs, kind+"/"+l.Addr().String())
	}
	for _, pc := range ls.UDP {
		addrs = append(addrs, "udp/"+pc.LocalAddr().String())
	}
	p.addrs.Store(&addrs)

	errc := make(chan error, len(ls.TCP)+len(ls.UDP)+1)
	var wg sync.WaitGroup
	var fast *fastServer
	if len(ls.TCP) > 0 && !p.cfg.NoFastPath {
		// HTTP/1.1 and HTTP/2 on the fast path (fastserver.go, h1conn.go, h2conn.go), the rest
		// handed to net/http through the feed. With TLS the fast path does
		// the handshake; net/http gets connections already decrypted.
		feed := newConnFeed(ls.TCP[0].Addr())
		fast = newFastServer(p, feed)
		fast.tls = srv.TLSConfig
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(feed); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve handed-over connections: %w", err)
			}
		}()
	}
	for _, l := range ls.TCP {
		cl := &countingListener{Listener: l, p: p}
		wg.Add(1)
		if fast != nil {
			go func() {
				defer wg.Done()
				if err := fast.serve(cl); err != nil {
					errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
				}
			}()
			continue
		}
		var sl net.Listener = cl
		if p.cfg.TLS != nil {
			sl = tls.NewListener(cl, srv.TLSConfig)
		}
		go func() {
			defer wg.Done()
			if err := srv.Serve(sl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	for _, pc := range ls.UDP {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h3.Serve(pc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("serve HTTP/3 on %s: %w", pc.LocalAddr(), err)
			}
		}()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	p.shutdown(srv, h3, fast, ls)
	wg.Wait()
	if fast != nil {
		fast.wg.Wait()
	}
	return serveErr
}

// shutdown stops accepting and drains clients within ShutdownGrace.
func (p *Proxy) shutdown(srv *http.Server, h3 *http3.Server, fast *fastServer, ls Listeners) {
	p.stopping.Store(true)
	srv.SetKeepAlivesEnabled(false)
	// Held requests would only wait out the grace period and then lose
	// their connection: answer them now, 503 with Retry-After.
	if n := p.q.Close(); n > 0 {
		p.log.Info("stopping: answered held requests with 503", "count", n)
	}
	sctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	var wg sync.WaitGroup
	var forceWG sync.WaitGroup
	forceWG.Add(1)
	go func() {
		defer forceWG.Done()
		select {
		case <-p.force:
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() {
		cancel()
		forceWG.Wait()
	}()
	if h3 != nil {
		// GOAWAY first (Shutdown), then Close 1012 to the WebSocket
		// sessions on HTTP/3 streams: Shutdown waits for their
		// connections, which clients close once no stream is open, and
		// cuts them when sctx ends, so a session not closed by then would
		// see its connection torn down instead of a WebSocket close.
		wg.Add(2)
		go func() {
			defer wg.Done()
			n := p.h3ws.shutdown()
			if left := p.h3ws.wait(sctx); n > 0 {
				p.log.Info("stopping: closed HTTP/3 WebSocket sessions with 1012", "count", n, "still_open", left)
			}
		}()
		go func() {
			defer wg.Done()
			_ = h3.Shutdown(sctx)
			for _, pc := range ls.UDP {
				pc.Close()
			}
		}()
	}
	// HTTP/2 WebSocket sessions get Close 1012 now: their connections never
	// go idle, so the stop would otherwise wait out the grace and cut them.
	if n := p.h2ws.shutdown(); n > 0 {
		p.log.Info("stopping: closed HTTP/2 WebSocket sessions with 1012", "count", n)
	}
	if fast != nil {
		// The fast path's listeners are not net/http's to close.
		for _, l := range ls.TCP {
			l.Close()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fast.shutdown(sctx); err != nil {
				fast.closeAll()
			}
		}()
	}
	// Shutdown closes the listeners, sends GOAWAY on HTTP/2 connections and
	// closes idle HTTP/1.1 ones; busy ones close after their response, which
	// carries Connection: close.
	if err := srv.Shutdown(sctx); err != nil {
		p.log.Warn("graceful stop ran out of time; closing the remaining connections", "grace", p.cfg.ShutdownGrace)
		srv.Close()
	}
	wg.Wait()
	if h3 != nil {
		h3.Close()
		// Close has ended every HTTP/3 connection; their registrations
		// go as their contexts end (h3ConnContext).
		deadline := time.Now().Add(5 * time.Second)
		for p.h3conns.Load() > 0 {
			if time.Now().After(deadline) {
				p.log.Warn("HTTP/3 connections still registered 5s after the server closed", "count", p.h3conns.Load())
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func udpPort(pc net.PacketConn) int {
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		return a.Port
	}
	return 0
}

// countingListener counts client connections and watches them for the
// server's own error answers (malformed requests) and read timeouts
// (slowloris), so bad input shows in the metrics.
type countingListener struct {
	net.Listener
	p *Proxy
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.p.activeConns.Add(1)
	wc := &watchedConn{Conn: c, p: l.p}
	e := &wc.ent
	e.conn, e.remote, e.tls = wc, c.RemoteAddr().String(), l.p.cfg.TLS != nil
	e.proto.Store(e.tlsProto(""))
	if l.p.cfg.NoFastPath {
		e.server.Store(serverNetHTTP)
	}
	e.setState(connActive, time.Now())
	l.p.conns.add(e)
	return wc, nil
}

// watchedConn is an accepted client connection, whoever serves it. It
// holds the connection's registry entry (registered from Accept to Close).
type watchedConn struct {
	net.Conn
	p        *Proxy
	closed   atomic.Bool
	deadline atomic.Int64 // last read deadline set, unix nanoseconds
	ent      connEntry
}

// The server aborts its own background reads with a deadline in 1970; only
// a real deadline running out means a slow client.
const abortDeadline = int64(1e15)

func (c *watchedConn) SetReadDeadline(t time.Time) error {
	c.deadline.Store(t.UnixNano())
	return c.Conn.SetReadDeadline(t)
}

func (c *watchedConn) SetDeadline(t time.Time) error {
	c.deadline.Store(t.UnixNano())
	return c.Conn.SetDeadline(t)
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	// The deadline is checked first: the server aborts its background read
	// after every request with a deadline in the past, and errors.As on
	// that error would cost an allocation and a reflection walk each time.
	if err != nil && c.deadline.Load() > abortDeadline {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.p.m.badInput.WithLabelValues("timeout").Inc()
		}
	}
	return n, err
}

// The server's own error answers (bad request line, oversized headers) are
// written in one piece with this shape, never with a Date header; proxied
// responses always have one.
var serverErrorShape = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")

func (c *watchedConn) Write(b []byte) (int, error) {
	if len(b) > 12 && b[0] == 'H' && serverErrorStatus(b) && bytes.Contains(b, serverErrorShape) {
		switch {
		case bytes.HasPrefix(b[9:], []byte("431")):
			c.p.m.badInput.WithLabelValues("header_too_large").Inc()
		default:
			c.p.m.badInput.WithLabelValues("malformed").Inc()
		}
	}
	return c.Conn.Write(b)
}

// serverErrorStatus reports whether b starts with a status line the server
// answers bad input with: 4xx, 501 (a transfer coding it does not decode)
// or 505 (an HTTP version it does not speak).
func serverErrorStatus(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) {
		return false
	}
	s := b[9:12]
	return s[0] == '4' || string(s) == "501" || string(s) == "505"
}

func (c *watchedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.p.activeConns.Add(-1)
		c.ent.state.Store(connClosing)
		c.p.conns.remove(&c.ent)
	}
	return c.Conn.Close()
}

// badInputHandler counts the errors net/http logs about clients (TLS
// handshake failures) and passes them on at debug level: a client's bad
// input is not the operator's problem.
type badInputHandler struct {
	p    *Proxy
	next slog.Handler
}

func (h *badInputHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *badInputHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "TLS handshake error"):
		h.p.m.badInput.WithLabelValues("tls").Inc()
	case strings.Contains(r.Message, "panic serving"):
		// A bug, never a client's fault: say so loudly.
		h.p.m.panics.Inc()
		h.p.log.Error("recovered a panic while serving a request", "detail", r.Message)
		return nil
	}
	if !h.next.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	r.Level = slog.LevelDebug
	return h.next.Handle(ctx, r)
}

func (h *badInputHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &badInputHandler{p: h.p, next: h.next.WithAttrs(as)}
}

func (h *badInputHandler) WithGroup(n string) slog.Handler {
	return &badInputHandler{p: h.p, next: h.next.WithGroup(n)}
}
