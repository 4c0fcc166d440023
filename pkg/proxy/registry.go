package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// The registry of client connections: every connection zd-queue accepted
// and has not closed, whoever serves it (the fast path, net/http after a
// hand-over, a tunnel after an Upgrade, quic-go for HTTP/3), with its
// protocol, its state and since when. The WebSocket relay and a successor
// zd-queue enumerate it; status reports its counts.
//
// It costs the hot path nothing it did not pay already: an entry is
// registered once per connection (in one of connShards maps, each under
// its own lock), and its state is the atomic the fast path switches
// between active and idle anyway. Its since is stamped with clock
// readings the connection makes for its own reasons (the idle deadline,
// the request's start).

// Connection states.
const (
	connActive   int32 = iota // a request (or an HTTP/2 or HTTP/3 stream) is in progress, or the connection is starting
	connIdle                  // waiting for a request
	connClosing               // being closed: no request will be read from it
	connUpgraded              // switched protocols (a tunnel, h2c by Upgrade): bytes pass through
)

var connStateNames = [...]string{connActive: "active", connIdle: "idle", connClosing: "closing", connUpgraded: "upgraded"}

// Protocols, as status reports them.
const (
	protoH1    uint32 = iota // HTTP/1.1 (or 1.0) in cleartext
	protoH1TLS               // HTTP/1.1 over TLS
	protoH2C                 // HTTP/2 in cleartext (prior knowledge or Upgrade)
	protoH2                  // HTTP/2 over TLS
	protoH3                  // HTTP/3
)

var connProtoNames = [...]string{protoH1: "h1", protoH1TLS: "h1+tls", protoH2C: "h2c", protoH2: "h2", protoH3: "h3"}

// Who serves a connection.
const (
	serverFast    uint32 = iota // zd-queue's own HTTP/1.1 and HTTP/2 server
	serverNetHTTP               // net/http's server (handed over, or --fast-path=false)
	serverQUIC                  // quic-go's HTTP/3 server
)

var connServerNames = [...]string{serverFast: "fast", serverNetHTTP: "net/http", serverQUIC: "quic"}

// connEntry is a client connection's registry entry. The accepted
// connection (watchedConn) holds it, so it lives as long as the
// connection whoever serves it.
type connEntry struct {
	state     atomic.Int32  // conn*
	proto     atomic.Uint32 // proto*
	server    atomic.Uint32 // server*
	since     atomic.Int64  // unix nanoseconds: when the state began (idle: when it became idle)
	readAhead atomic.Int64  // bytes read from the client and not yet served, when last known

	mu      sync.Mutex // HTTP/3 only: streams, and the state changes it makes
	streams int

	conn   net.Conn   // the accepted connection; nil for HTTP/3
	qconn  *quic.Conn // HTTP/3
	remote string
	seq    uint32 // its number, in the order registered (an id while it is open)
	shard  uint32
	tls    bool
}

// setState sets the state and when it began.
func (e *connEntry) setState(s int32, now time.Time) {
	e.since.Store(now.UnixNano())
	e.state.Store(s)
}

// tlsProto is the protocol a connection of this entry speaks with ALPN's
// choice alpn.
func (e *connEntry) tlsProto(alpn string) uint32 {
	switch {
	case alpn == "h2":
		return protoH2
	case e.tls:
		return protoH1TLS
	}
	return protoH1
}

const connShards = 32

// connRegistry is the set of client connections of one Proxy.
type connRegistry struct {
	next   atomic.Uint32
	shards [connShards]connShard
}

type connShard struct {
	mu sync.Mutex
	m  map[*connEntry]struct{}
	_  [40]byte // a cache line each: registrations on different shards do not contend
}

func (r *connRegistry) add(e *connEntry) {
	e.seq = r.next.Add(1)
	e.shard = e.seq % connShards
	sh := &r.shards[e.shard]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[*connEntry]struct{}{}
	}
	sh.m[e] = struct{}{}
	sh.mu.Unlock()
}

func (r *connRegistry) remove(e *connEntry) {
	sh := &r.shards[e.shard]
	sh.mu.Lock()
	delete(sh.m, e)
	sh.mu.Unlock()
}

// each calls fn for every entry, one shard at a time, until fn returns
// false. fn runs under the shard's lock: it must not block, nor register
// or close a connection.
func (r *connRegistry) each(fn func(*connEntry) bool) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for e := range sh.m {
			if !fn(e) {
				sh.mu.Unlock()
				return
			}
		}
		sh.mu.Unlock()
	}
}

// ClientConn is one client connection as the registry knows it.
type ClientConn struct {
	ID       uint32    // its number: unique among the open connections
	Protocol string    // h1, h1+tls, h2c, h2, h3
	Server   string    // fast, net/http, quic
	State    string    // active, idle, upgraded, closing
	Since    time.Time // when the state began
	// ReadAhead is how many bytes were read from the client and not yet
	// served, when last known: what the fast path passed on with a
	// connection handed to net/http and net/http has not read yet; for a
	// fast-path HTTP/1.1 connection, what followed the head of its current
	// request (body, pipelined requests); 0 when idle. HTTP/2 and HTTP/3
	// report 0.
	ReadAhead int64
	Remote    string
	// Conn is the accepted connection (under any TLS layer); nil for
	// HTTP/3. Whoever serves it owns it: reading from or writing to it
	// would break that.
	Conn net.Conn
}

func (e *connEntry) describe() ClientConn {
	return ClientConn{
		ID:        e.seq,
		Protocol:  connProtoNames[e.proto.Load()],
		Server:    connServerNames[e.server.Load()],
		State:     connStateNames[e.state.Load()],
		Since:     time.Unix(0, e.since.Load()),
		ReadAhead: e.readAhead.Load(),
		Remote:    e.remote,
		Conn:      e.conn,
	}
}

// EachClientConn calls fn with every open client connection, until fn
// returns false. The connections change while it runs: one opened or
// closed meanwhile may or may not be seen. fn must not block.
func (p *Proxy) EachClientConn(fn func(ClientConn) bool) {
	p.conns.each(func(e *connEntry) bool { return fn(e.describe()) })
}

// ClientConnCounts counts the open client connections by protocol (h1,
// h1+tls, h2c, h2, h3), then state (active, idle, upgraded, closing).
// Only what has connections is in it.
func (p *Proxy) ClientConnCounts() map[string]map[string]int {
	var n [len(connProtoNames)][len(connStateNames)]int
	p.conns.each(func(e *connEntry) bool {
		n[e.proto.Load()][e.state.Load()]++
		return true
	})
	out := map[string]map[string]int{}
	for pr := range n {
		for s, c := range n[pr] {
			if c == 0 {
				continue
			}
			if out[connProtoNames[pr]] == nil {
				out[connProtoNames[pr]] = map[string]int{}
			}
			out[connProtoNames[pr]][connStateNames[s]] = c
		}
	}
	return out
}

// entryOf returns the registry entry of a client connection as net/http's
// server sees it, or nil.
func entryOf(c net.Conn) *connEntry {
	for {
		switch cc := c.(type) {
		case *watchedConn:
			return &cc.ent
		case *replayConn:
			return cc.ent
		case *tls.Conn:
			c = cc.NetConn()
		default:
			return nil
		}
	}
}

// netHTTPConnState is net/http's ConnState hook: it keeps the entries of
// the connections net/http serves up to date.
func netHTTPConnState(c net.Conn, s http.ConnState) {
	e := entryOf(c)
	if e == nil {
		return
	}
	now := time.Now()
	switch s {
	case http.StateNew:
		e.server.Store(serverNetHTTP)
		e.setState(connActive, now)
	case http.StateActive:
		if tc, ok := c.(*tls.Conn); ok {
			e.proto.Store(e.tlsProto(tc.ConnectionState().NegotiatedProtocol))
		}
		e.setState(connActive, now)
	case http.StateIdle:
		e.setState(connIdle, now)
	case http.StateHijacked:
		e.setState(connUpgraded, now)
	case http.StateClosed:
		e.setState(connClosing, now)
	}
}

type connEntryKey struct{}

// connEntryFrom returns the entry net/http's or quic-go's ConnContext put
// in a request's context, or nil.
func connEntryFrom(ctx context.Context) *connEntry {
	e, _ := ctx.Value(connEntryKey{}).(*connEntry)
	return e
}

// netHTTPConnContext is net/http's ConnContext: the request's context
// carries the connection's entry, and a decrypted TLS connection handed
// over by the fast path its TLS state.
func netHTTPConnContext(ctx context.Context, c net.Conn) context.Context {
	if e := entryOf(c); e != nil {
		ctx = context.WithValue(ctx, connEntryKey{}, e)
	}
	return handedTLS(ctx, c)
}

// h3ConnContext is quic-go's ConnContext: it registers an HTTP/3
// connection until it ends. Serve waits (bounded) for h3conns to fall to
// zero, so no registration outlives it.
func (p *Proxy) h3ConnContext(ctx context.Context, qc *quic.Conn) context.Context {
	e := &connEntry{qconn: qc, remote: qc.RemoteAddr().String(), tls: true}
	e.proto.Store(protoH3)
	e.server.Store(serverQUIC)
	e.setState(connIdle, time.Now())
	p.conns.add(e)
	p.h3conns.Add(1)
	context.AfterFunc(qc.Context(), func() {
		p.conns.remove(e)
		p.h3conns.Add(-1)
	})
	return context.WithValue(ctx, connEntryKey{}, e)
}

// serveH3 is the HTTP/3 server's handler: an HTTP/3 connection is active
// while a request on it is.
func (p *Proxy) serveH3(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if e := connEntryFrom(r.Context()); e != nil {
		e.h3stream(1, now)
		defer e.h3stream(-1, time.Time{})
	}
	p.serve(w, r, now)
}

// h3stream counts an HTTP/3 request starting (+1) or ending (-1); the
// first to start makes the connection active, the last to end idle.
func (e *connEntry) h3stream(delta int, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.streams += delta
	switch {
	case delta > 0 && e.streams == 1:
		e.setState(connActive, now)
	case delta < 0 && e.streams == 0:
		e.setState(connIdle, time.Now())
	}
}

// serveNetHTTP is net/http's handler. HTTP/2 in cleartext shows only in
// the requests (net/http's ConnState cannot tell it from HTTP/1.1).
func (p *Proxy) serveNetHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		if e := connEntryFrom(r.Context()); e != nil && e.proto.Load() == protoH1 {
			e.proto.Store(protoH2C)
		}
	}
	p.ServeHTTP(w, r)
}
