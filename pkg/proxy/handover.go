package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// The hand-over to net/http: a connection the fast path does not serve
// goes to net/http's server, through connFeed, with the bytes already read
// put back in front (replayConn) and its TLS state kept.

// handOver gives the connection, with what was read of it and not yet
// used, to net/http. It reports whether net/http took it.
func (hc *h1conn) handOver() bool {
	var pre []byte
	if hc.cr.peeked {
		pre = append(pre, hc.cr.peekByte)
		hc.cr.peeked = false
	}
	if n := hc.br.Buffered(); n > 0 {
		b, _ := hc.br.Peek(n)
		pre = append(pre, b...)
	}
	hc.dl = time.Time{}
	hc.c.SetDeadline(time.Time{})
	if bytes.HasPrefix(pre, []byte(h2Preface)) {
		hc.ent.proto.Store(protoH2C) // prior knowledge, with the fast HTTP/2 server off
	}
	hc.ent.readAhead.Store(int64(len(pre)))
	hc.ent.server.Store(serverNetHTTP) // closeIdle leaves it alone from now on
	rc := &replayConn{Conn: hc.c, pre: pre, tls: hc.tlsState, ent: hc.ent}
	if hc.s.feed == nil || !hc.s.feed.hand(rc) {
		return false
	}
	return true
}

// replayConn is a connection handed to net/http: the bytes the fast path
// read and did not use come first.
type replayConn struct {
	net.Conn
	pre []byte
	tls *tls.ConnectionState // of a decrypted TLS connection
	ent *connEntry
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		c.ent.readAhead.Store(int64(len(c.pre)))
		return n, nil
	}
	return c.Conn.Read(b)
}

// handedTLS is part of net/http's ConnContext (netHTTPConnContext) for
// the connections the fast path hands over: a decrypted TLS connection keeps its TLS state for the
// request (net/http sees only the plain bytes).
func handedTLS(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok && rc.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, rc.tls)
	}
	return ctx
}

type tlsStateKey struct{}

// connFeed is a listener whose connections come from the fast path: what
// it leaves to net/http's server.
type connFeed struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnFeed(addr net.Addr) *connFeed {
	return &connFeed{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (f *connFeed) Accept() (net.Conn, error) {
	select {
	case c := <-f.ch:
		return c, nil
	case <-f.done:
		return nil, net.ErrClosed
	}
}

func (f *connFeed) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

func (f *connFeed) Addr() net.Addr { return f.addr }

// hand passes c to the server; false once the feed is closed.
func (f *connFeed) hand(c net.Conn) bool {
	select {
	case f.ch <- c:
		return true
	case <-f.done:
		return false
	}
}
