package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// The fast server: it accepts the connections of one Serve call, does
// the TLS handshake when serving HTTPS, and serves each connection on the
// fast path (HTTP/1.1 in h1conn.go, HTTP/2 in h2conn.go) until it is
// handed to net/http (handover.go) or ends. A graceful stop goes through
// here too: closeIdle and shutdown.

// aLongTimeAgo is a deadline in the past: it makes a blocked read return.
var aLongTimeAgo = time.Unix(1, 0)

// fastServer is the set of fast-path connections of one Serve call.
type fastServer struct {
	p    *Proxy
	feed *connFeed   // where connections left to net/http go
	tls  *tls.Config // serve HTTPS: handshake first, h2 or http/1.1 by ALPN

	mu    sync.Mutex
	conns map[*h1conn]struct{}
	wg    sync.WaitGroup
}

func newFastServer(p *Proxy, feed *connFeed) *fastServer {
	return &fastServer{p: p, feed: feed, conns: map[*h1conn]struct{}{}}
}

// serve accepts on l until it is closed. Connections start on the fast
// path.
func (s *fastServer) serve(l net.Listener) error {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.p.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of fds or the like: wait, as net/http does, instead
				// of spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.p.log.Warn("accept failed; retrying", "addr", l.Addr(), "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		hc := s.newConn(c)
		if hc == nil {
			continue
		}
		s.p.spawn(hc)
	}
}

func isTemporaryAccept(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (s *fastServer) newConn(c net.Conn) *h1conn {
	if s.tls != nil {
		c = tls.Server(c, s.tls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hc := &h1conn{s: s, p: s.p, c: c, ctx: ctx, cancel: cancel}
	// The connection's state is its registry entry's (see registry.go);
	// one not accepted through countingListener gets an entry of its own,
	// unregistered.
	if hc.ent = entryOf(c); hc.ent == nil {
		hc.ent = &connEntry{conn: c, remote: c.RemoteAddr().String()}
		hc.ent.setState(connActive, time.Now())
	}
	hc.state, hc.since, hc.remote = &hc.ent.state, &hc.ent.since, hc.ent.remote
	hc.cr.hc = hc
	hc.w.hc = hc
	hc.w.header = make(http.Header, 16)
	hc.hdr = make(http.Header, 16)
	hc.tmpl = (&http.Request{}).WithContext(ctx)
	s.mu.Lock()
	if s.p.stopping.Load() {
		s.mu.Unlock()
		cancel()
		c.Close()
		return nil
	}
	s.conns[hc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	return hc
}

func (s *fastServer) forget(hc *h1conn) {
	s.mu.Lock()
	delete(s.conns, hc)
	s.mu.Unlock()
	s.wg.Done()
}

// h2IdleSettle is how long an HTTP/2 connection must have had no stream
// before a graceful stop closes it from outside.
const h2IdleSettle = 100 * time.Millisecond

// closeIdle closes the HTTP/1.1 connections that have waited for a
// request for at least minIdle, and the HTTP/2 ones with no stream open
// after GOAWAY, and reports how many connections remain.
func (s *fastServer) closeIdle(minIdle time.Duration) int {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for hc := range s.conns {
		if h2 := hc.h2.Load(); h2 != nil {
			// HTTP/2: GOAWAY tells the client which streams were
			// taken; the connection ends when its last one does.
			h2.askGoAway()
			// Not the moment its last stream ended: that stream's
			// last frames (END_STREAM, a WebSocket's Close) may still
			// be on their way to the socket, and finishStream ends
			// such a connection itself once they are out.
			if h2.active.Load() == 0 && now-hc.since.Load() >= int64(h2IdleSettle) {
				hc.state.Store(connClosing)
				hc.c.Close()
			}
			continue
		}
		if hc.ent.server.Load() != serverFast {
			continue // handed to net/http, which closes it if need be
		}
		if now-hc.since.Load() >= int64(minIdle) && hc.state.CompareAndSwap(connIdle, connClosing) {
			hc.c.Close()
		}
	}
	return len(s.conns)
}

// closeAll closes every connection, busy or not.
func (s *fastServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for hc := range s.conns {
		hc.state.Store(connClosing)
		hc.c.Close()
	}
}

// shutdown ends the connections until none is left or ctx ends. HTTP/1.1
// has no way to tell a client to stop sending on a connection, and
// closing one the client is about to reuse loses its next request: so a
// request still arriving is answered with Connection: close, and an idle
// connection is closed only once it has been idle a while (a client that
// reuses connections has sent by then), at most half the grace period.
func (s *fastServer) shutdown(ctx context.Context) error {
	minIdle := time.Second
	if dl, ok := ctx.Deadline(); ok {
		minIdle = min(minIdle, time.Until(dl)/2)
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.closeIdle(minIdle) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
