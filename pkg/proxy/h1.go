package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// The HTTP/1.1 fast path (cleartext, or after the TLS handshake it does
// itself; ALPN's h2 goes to the HTTP/2 server in h2.go).
//
// net/http's server costs about as much CPU per request as a whole
// HAProxy hop (a background-read goroutine and two deadline changes per
// request, a fresh context, request and response writer each time). A
// proxy in front of workers spends most of its life on one shape of
// request: a GET or a small POST with Content-Length, in origin form, on a
// keep-alive connection. h1conn serves exactly that shape itself, with
// per-connection buffers, request and header map reused from one request
// to the next, one flush per response, and no goroutine besides the
// connection's own (a watcher starts only while a request is held or a
// response streams, when the client leaving must be noticed).
//
// Everything else goes to net/http, connection and all, with the bytes
// already read put back in front: h2c (prior knowledge and Upgrade), other
// Upgrades (WebSocket), chunked request bodies, Expect: 100-continue,
// HTTP/1.0, absolute-form targets, header blocks larger than the read
// buffer, and anything malformed, which net/http answers (400, 431, 505)
// exactly as before. The fast parser only ever accepts; it never answers
// an error itself, so when in doubt it hands over.

// h1ReadBuf is the client read buffer; a request head that does not fit
// goes to net/http (which allows up to Config.MaxHeaderBytes).
const h1ReadBuf = 4 << 10

// h1BodyDiscard bounds the unread request body thrown away after a response
// so the connection can be reused; past it the connection is closed.
const h1BodyDiscard = 256 << 10

// aLongTimeAgo is a deadline in the past: it makes a blocked read return.
var aLongTimeAgo = time.Unix(1, 0)

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBuf) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// h1server is the set of fast-path connections of one Serve call.
type h1server struct {
	p    *Proxy
	feed *connFeed   // where connections left to net/http go
	tls  *tls.Config // serve HTTPS: handshake first, h2 or http/1.1 by ALPN

	mu    sync.Mutex
	conns map[*h1conn]struct{}
	wg    sync.WaitGroup
}

// Connection states, for a graceful stop: an idle connection (waiting for
// a request) may be closed at any time; an active one finishes its request.
const (
	h1Active int32 = iota
	h1Idle
	h1Closed
)

func newH1Server(p *Proxy, feed *connFeed) *h1server {
	return &h1server{p: p, feed: feed, conns: map[*h1conn]struct{}{}}
}

// serve accepts on l until it is closed. Connections start on the fast
// path.
func (s *h1server) serve(l net.Listener) error {
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
		go hc.serve()
	}
}

func isTemporaryAccept(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (s *h1server) newConn(c net.Conn) *h1conn {
	if s.tls != nil {
		c = tls.Server(c, s.tls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hc := &h1conn{s: s, p: s.p, c: c, ctx: ctx, cancel: cancel, remote: c.RemoteAddr().String()}
	hc.state.Store(h1Active)
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

func (s *h1server) forget(hc *h1conn) {
	s.mu.Lock()
	delete(s.conns, hc)
	s.mu.Unlock()
	s.wg.Done()
}

// closeIdle closes the HTTP/1.1 connections that have waited for a
// request for at least minIdle, and the HTTP/2 ones with no stream open
// after GOAWAY, and reports how many connections remain.
func (s *h1server) closeIdle(minIdle time.Duration) int {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for hc := range s.conns {
		if h2 := hc.h2.Load(); h2 != nil {
			// HTTP/2: GOAWAY tells the client which streams were
			// taken; the connection ends when its last one does.
			if h2.goAwayAsked.CompareAndSwap(false, true) {
				go h2.goAwayNow(http2.ErrCodeNo)
			}
			if h2.active.Load() == 0 {
				hc.c.Close()
			}
			continue
		}
		if now-hc.idleSince.Load() >= int64(minIdle) && hc.state.CompareAndSwap(h1Idle, h1Closed) {
			hc.c.Close()
		}
	}
	return len(s.conns)
}

// closeAll closes every connection, busy or not.
func (s *h1server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for hc := range s.conns {
		hc.state.Store(h1Closed)
		hc.c.Close()
	}
}

// shutdown ends the connections until none is left or ctx ends. HTTP/1.1
// has no way to tell a client to stop sending on a connection, and
// closing one the client is about to reuse loses its next request: so a
// request still arriving is answered with Connection: close, and an idle
// connection is closed only once it has been idle a while (a client that
// reuses connections has sent by then), at most half the grace period.
func (s *h1server) shutdown(ctx context.Context) error {
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

// h1conn is one client connection on the fast path. Everything in it is
// used by the connection's goroutine only, except where noted.
type h1conn struct {
	s         *h1server
	p         *Proxy
	c         net.Conn
	cr        h1connReader
	br        *bufio.Reader
	idleSince atomic.Int64 // unix nanoseconds the connection last became idle
	bw        *bufio.Writer
	remote    string
	state     atomic.Int32

	// ctx is every request's context: cancelled when a read or write on
	// the connection fails (the client went away) and when it ends.
	ctx    context.Context
	cancel context.CancelFunc
	dl     time.Time // read deadline in effect; zero for none

	tmpl *http.Request // a request carrying ctx, copied for each request
	req  *http.Request
	url  url.URL
	hdr  http.Header // the request's header map, cleared between requests
	vals []string    // backing array of the request's header values
	body h1body
	w    h1writer

	watching  bool
	watchDone chan struct{}

	h2       atomic.Pointer[h2conn] // set when the connection speaks HTTP/2
	tlsState *tls.ConnectionState   // for HTTPS, once the handshake is done
}

// h1connReader is what the connection's bufio.Reader reads from: the
// connection, after any byte the client watcher read first. A failed read
// means the client is gone (or too slow): every request context ends.
type h1connReader struct {
	hc       *h1conn
	peeked   bool
	peekByte byte
	aborting atomic.Bool // the watcher is being stopped: its timeout is ours
}

func (r *h1connReader) Read(b []byte) (int, error) {
	if r.peeked && len(b) > 0 {
		b[0] = r.peekByte
		r.peeked = false
		return 1, nil
	}
	n, err := r.hc.c.Read(b)
	if err != nil && !r.aborting.Load() {
		r.hc.cancel()
	}
	return n, err
}

// serve runs the connection's request loop.
func (hc *h1conn) serve() {
	handed := false
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				hc.p.m.panics.Inc()
				hc.p.log.Error("recovered a panic while serving a request", "detail", fmt.Sprint(v))
			}
			handed = false
		}
		if hc.watching {
			hc.stopWatch()
		}
		hc.cancel()
		if !handed {
			if hc.body.left > 0 && hc.w.headOut && hc.w.err == nil {
				hc.lingerClose()
			}
			hc.state.Store(h1Closed)
			hc.c.Close()
		}
		if hc.br != nil {
			hc.br.Reset(nil)
			h1ReaderPool.Put(hc.br)
		}
		hc.releaseWriter()
		hc.s.forget(hc)
	}()
	hc.br = h1ReaderPool.Get().(*bufio.Reader)
	hc.br.Reset(&hc.cr)
	if tc, ok := hc.c.(*tls.Conn); ok {
		switch proto, ok := hc.handshake(tc); {
		case !ok:
			return
		case proto == "h2" && hc.p.cfg.NoFastH2:
			// net/http's HTTP/2 server takes it as it is (nothing read).
			hc.state.Store(h1Closed)
			handed = hc.s.feed != nil && hc.s.feed.hand(tc)
			return
		case proto == "h2":
			if !hc.h2Preface(true) {
				hc.p.m.badInput.WithLabelValues("h2_protocol").Inc()
				return
			}
			hc.serveH2()
			return
		}
	}
	for first := true; ; first = false {
		r, ok, fallback := hc.readRequest()
		if fallback {
			if first && hc.h2Preface(false) && !hc.p.cfg.NoFastH2 {
				hc.serveH2()
				return
			}
			handed = hc.handOver()
			return
		}
		if !ok {
			return
		}
		hc.w.reset(r)
		hc.p.ServeHTTP(&hc.w, r)
		more := hc.w.finish() && !hc.w.closeAfter
		if hc.watching {
			// The watcher's read is already the wait for the next
			// request; aborting it would cost a timer and a wake-up.
			if more {
				more = hc.awaitWatch()
			} else {
				hc.stopWatch()
			}
		}
		if !more || !hc.finishBody() {
			return
		}
	}
}

// awaitWatch waits, as for an idle connection, for the watcher to read
// the first byte of the next request. It returns false when the
// connection ended instead (closed, idle timeout, graceful stop).
func (hc *h1conn) awaitWatch() bool {
	hc.idleSince.Store(time.Now().UnixNano())
	hc.state.Store(h1Idle)
	hc.setReadDeadline(time.Now(), hc.p.cfg.IdleTimeout, false)
	if hc.p.stopping.Load() {
		hc.stopWatch()
		return false
	}
	<-hc.watchDone
	hc.watching = false
	return hc.cr.peeked && hc.state.CompareAndSwap(h1Idle, h1Active)
}

// handshake completes a TLS handshake within ReadHeaderTimeout and
// returns the protocol ALPN chose; ok false when it failed (counted as bad
// input, as net/http's server did).
func (hc *h1conn) handshake(tc *tls.Conn) (proto string, ok bool) {
	tc.SetDeadline(time.Now().Add(hc.p.cfg.ReadHeaderTimeout))
	if err := tc.HandshakeContext(hc.ctx); err != nil {
		hc.p.m.badInput.WithLabelValues("tls").Inc()
		hc.p.log.Debug("TLS handshake failed", "remote", hc.remote, "err", err)
		return "", false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	hc.tlsState = &st
	return st.NegotiatedProtocol, true
}

// handedTLS is net/http's ConnContext for the connections the fast path
// hands over: a decrypted TLS connection keeps its TLS state for the
// request (net/http sees only the plain bytes).
func handedTLS(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*replayConn); ok && rc.tls != nil {
		return context.WithValue(ctx, tlsStateKey{}, rc.tls)
	}
	return ctx
}

type tlsStateKey struct{}

// h2Preface reports whether the connection starts with the HTTP/2
// client preface: after ALPN chose h2 it must (and is waited for); on a
// cleartext connection it may (h2c with prior knowledge), and is looked
// for only when what has arrived starts like it.
func (hc *h1conn) h2Preface(alpn bool) bool {
	if alpn {
		// ALPN chose h2: the preface must come, within the header timeout.
		hc.c.SetReadDeadline(time.Now().Add(hc.p.cfg.ReadHeaderTimeout))
		defer hc.c.SetReadDeadline(time.Time{})
	} else if b, _ := hc.br.Peek(min(hc.br.Buffered(), len(h2Preface))); len(b) == 0 || !strings.HasPrefix(h2Preface, string(b)) {
		return false // not waiting for bytes that may never come
	}
	b, err := hc.br.Peek(len(h2Preface))
	return err == nil && string(b) == h2Preface
}

// out returns the connection's write buffer, taking one from the pool
// for the response about to be written.
func (hc *h1conn) out() *bufio.Writer {
	if hc.bw == nil {
		hc.bw = h1WriterPool.Get().(*bufio.Writer)
		hc.bw.Reset(hc.c)
	}
	return hc.bw
}

// releaseWriter gives the write buffer back to the pool (whatever is in
// it is dropped: call it after a flush, or when the connection ends).
func (hc *h1conn) releaseWriter() {
	if hc.bw != nil {
		hc.bw.Reset(nil)
		h1WriterPool.Put(hc.bw)
		hc.bw = nil
	}
}

// readRequest reads the next request head. ok false: the connection is
// done (closed, timed out, or stopping). fallback: the request is not one
// the fast path serves; the connection goes to net/http.
func (hc *h1conn) readRequest() (r *http.Request, ok, fallback bool) {
	if hc.br.Buffered() == 0 && !hc.cr.peeked {
		// Waiting for a request: idle, closable by a graceful stop.
		now := time.Now()
		hc.setReadDeadline(now, hc.p.cfg.IdleTimeout, true)
		hc.idleSince.Store(now.UnixNano())
		hc.state.Store(h1Idle)
		if hc.p.stopping.Load() {
			return nil, false, false
		}
		if _, err := hc.br.Peek(1); err != nil {
			return nil, false, false
		}
		if !hc.state.CompareAndSwap(h1Idle, h1Active) {
			return nil, false, false // closed by a graceful stop
		}
	}
	headerDL := false
	for {
		buf, _ := hc.br.Peek(hc.br.Buffered())
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			r, ok := hc.parse(buf[:end+4])
			if !ok {
				return nil, false, true
			}
			hc.br.Discard(end + 4)
			if headerDL || (r.ContentLength > 0 && int64(hc.br.Buffered()) < r.ContentLength) {
				// The body may take its time, as with net/http (the
				// handler bounds what it waits for).
				hc.clearReadDeadline()
			}
			return r, true, false
		}
		if len(buf) >= hc.br.Size() {
			return nil, false, true // larger than the fast path reads
		}
		if !headerDL {
			// The head is coming in pieces: from now on it has
			// ReadHeaderTimeout to complete (slowloris clients end here).
			hc.setReadDeadline(time.Now(), hc.p.cfg.ReadHeaderTimeout, false)
			headerDL = true
		}
		if _, err := hc.br.Peek(len(buf) + 1); err != nil {
			return nil, false, false
		}
	}
}

// setReadDeadline sets the read deadline to now+d. With lazy, a deadline
// already within d/64 before that is kept: under load a connection would
// otherwise update its timer for every request.
func (hc *h1conn) setReadDeadline(now time.Time, d time.Duration, lazy bool) {
	want := now.Add(d)
	if lazy && !hc.dl.IsZero() && !hc.dl.After(want) && want.Sub(hc.dl) < d/64 {
		return
	}
	hc.dl = want
	hc.c.SetReadDeadline(want)
}

func (hc *h1conn) clearReadDeadline() {
	if !hc.dl.IsZero() {
		hc.dl = time.Time{}
		hc.c.SetReadDeadline(time.Time{})
	}
}

// parse parses a request head (ending with the empty line) into the
// connection's reused request. It returns false for anything it leaves
// to net/http.
func (hc *h1conn) parse(b []byte) (*http.Request, bool) {
	// "METHOD SP /target SP HTTP/1.1 CRLF"
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 <= 0 {
		return nil, false
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < sp1 || b[eol-1] != '\r' {
		return nil, false
	}
	line := b[:eol-1]
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return nil, false
	}
	sp2 += sp1 + 1
	if string(line[sp2+1:]) != "HTTP/1.1" {
		return nil, false
	}
	method, target := line[:sp1], line[sp1+1:sp2]
	if !validToken(method) || target[0] != '/' {
		return nil, false
	}
	plain, inQuery := true, false
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, false
		}
		if c == '?' {
			inQuery = true
		} else if !inQuery && !plainPathByte[c] {
			plain = false
		}
	}

	// One string for the whole head: the method, target, names and values
	// are substrings of it.
	head := string(b)
	methodS := internMethod(method, head[:sp1])
	targetS := head[sp1+1 : sp2]
	rest := head[eol+1 : len(head)-2] // the header lines, each ending in CRLF

	h := hc.hdr
	clear(h)
	n := strings.Count(rest, "\n")
	if cap(hc.vals) < n {
		hc.vals = make([]string, 0, max(n, 16))
	}
	vals := hc.vals[:0]
	host, hosts := "", 0
	length := int64(0)
	lengths := 0
	closeConn := false
	for len(rest) > 0 {
		nl := strings.IndexByte(rest, '\n')
		if nl < 1 || rest[nl-1] != '\r' {
			return nil, false
		}
		l := rest[:nl-1]
		rest = rest[nl+1:]
		name, v, ok := parseField(l)
		if !ok {
			return nil, false
		}
		switch name {
		case "Host":
			host = v
			hosts++
			continue // net/http keeps it in Request.Host only
		case "Content-Length":
			cl, err := strconv.ParseUint(v, 10, 63)
			if err != nil || v[0] == '+' {
				return nil, false
			}
			length = int64(cl)
			lengths++
		case "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings":
			return nil, false
		case "Connection":
			for f := range strings.SplitSeq(v, ",") {
				switch f = trimOWS(f); {
				case strings.EqualFold(f, "close"):
					closeConn = true
				case strings.EqualFold(f, "upgrade"):
					return nil, false
				}
			}
		}
		vals = append(vals, v)
		if prior, ok := h[name]; ok {
			h[name] = append(prior, v)
		} else {
			h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	hc.vals = vals
	if hosts != 1 || !httpguts.ValidHostHeader(host) || lengths > 1 {
		return nil, false
	}

	path, query := targetS, ""
	if q := strings.IndexByte(targetS, '?'); q >= 0 {
		path, query = targetS[:q], targetS[q+1:]
	}
	hc.url = url.URL{Path: path, RawQuery: query}
	if !plain {
		// Escapes and the like: net/url's reading of them (Path, RawPath).
		// The backend gets the target as sent either way.
		u, err := url.ParseRequestURI(targetS)
		if err != nil {
			return nil, false
		}
		hc.url = *u
	}

	if hc.req == nil {
		hc.req = new(http.Request)
	}
	r := hc.req
	*r = *hc.tmpl
	r.Method = methodS
	r.URL = &hc.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = h
	r.Host = host
	r.RemoteAddr = hc.remote
	r.RequestURI = targetS
	r.TLS = hc.tlsState
	r.Close = closeConn
	r.ContentLength = length
	r.Body = http.NoBody
	hc.body = h1body{}
	if length > 0 {
		hc.body = h1body{hc: hc, left: length}
		r.Body = &hc.body
	}
	return r, true
}

// plainPathByte marks the bytes a path may hold that net/url neither
// unescapes nor would escape: for a path of only these, URL.Path is the
// path as sent and RawPath is empty.
var plainPathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// internMethod returns the common methods as constants, so the head's
// string is not kept alive by a method name stored elsewhere.
func internMethod(b []byte, s string) string {
	switch string(b) {
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return s
}

func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// finishBody makes the connection ready for the next request: the unread
// rest of this one's body is read and thrown away (up to h1BodyDiscard).
// It returns false when the connection cannot be reused.
func (hc *h1conn) finishBody() bool {
	if hc.body.left <= 0 {
		return hc.body.err == nil || hc.body.left == 0
	}
	if hc.body.left > h1BodyDiscard {
		return false
	}
	hc.setReadDeadline(time.Now(), hc.p.cfg.BodyTimeout, false)
	n, err := hc.br.Discard(int(hc.body.left))
	hc.body.left -= int64(n)
	return err == nil && hc.body.left == 0
}

// lingerClose ends a connection whose client is still sending a body
// nobody will read (a refused upload): closing at once would reset the
// connection and could destroy the answer before the client read it. So
// the write side is shut first (the client sees the end of the answer),
// and what the client still sends is read and dropped for a short while.
func (hc *h1conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	c := hc.c
	if wc, ok := c.(*watchedConn); ok {
		c = wc.Conn
	}
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	for {
		if _, err := c.Read(*bp); err != nil {
			return
		}
	}
}

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
	hc.state.Store(h1Closed)
	rc := &replayConn{Conn: hc.c, pre: pre, tls: hc.tlsState}
	if hc.s.feed == nil || !hc.s.feed.hand(rc) {
		return false
	}
	return true
}

// watchClient makes the request context end when the client closes the
// connection while its request waits (held in the buffer, or a streamed
// response): one goroutine reading a byte. Not while a request body is
// still to be read: the reader is the handler then.
func (hc *h1conn) watchClient() {
	if hc.watching || hc.body.left > 0 || hc.br.Buffered() > 0 || hc.cr.peeked {
		return
	}
	hc.watching = true
	hc.watchDone = make(chan struct{})
	hc.dl = time.Time{}
	hc.c.SetReadDeadline(time.Time{})
	go func() {
		defer close(hc.watchDone)
		var b [1]byte
		n, err := hc.c.Read(b[:])
		if n == 1 {
			// The client sent its next request already (pipelining):
			// keep the byte for it.
			hc.cr.peekByte, hc.cr.peeked = b[0], true
		}
		if err != nil && !hc.cr.aborting.Load() {
			hc.cancel()
		}
	}()
}

// stopWatch ends the watcher and waits for it.
func (hc *h1conn) stopWatch() {
	hc.cr.aborting.Store(true)
	hc.c.SetReadDeadline(aLongTimeAgo)
	<-hc.watchDone
	hc.cr.aborting.Store(false)
	hc.watching = false
	hc.dl = aLongTimeAgo // whatever is set next replaces it
}

// clientWatcher is implemented by response writers whose request context
// ends with the client only once asked to watch (the HTTP/1.1 fast path).
type clientWatcher interface{ watchClient() }

// watchClient asks w to notice the client leaving from now on, where that
// costs something to notice.
func watchClient(w http.ResponseWriter) {
	if cw, ok := w.(clientWatcher); ok {
		cw.watchClient()
	}
}

// h1body is a request body of known length read from the connection.
type h1body struct {
	hc   *h1conn
	left int64
	err  error
}

func (b *h1body) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.hc.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		return n, io.EOF
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
	}
	return n, err
}

func (b *h1body) Close() error { return nil }

// replayConn is a connection handed to net/http: the bytes the fast path
// read and did not use come first.
type replayConn struct {
	net.Conn
	pre []byte
	tls *tls.ConnectionState // of a decrypted TLS connection
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

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
