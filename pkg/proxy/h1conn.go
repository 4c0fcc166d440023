package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The HTTP/1.1 fast path (cleartext, or after the TLS handshake it does
// itself; ALPN's h2 goes to the HTTP/2 server in h2conn.go).
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

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1ReadBuf) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// h1conn is one client connection on the fast path. Everything in it is
// used by the connection's goroutine only, except where noted.
type h1conn struct {
	s      *fastServer
	p      *Proxy
	c      net.Conn
	cr     h1connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string

	// The connection's registry entry, and its state and since, which
	// graceful stops read and switch from idle to closing.
	ent       *connEntry
	state     *atomic.Int32 // conn*
	since     *atomic.Int64 // unix nanoseconds: when the state began (became idle, or the request began)
	readAhead int64         // what ent.readAhead says (this goroutine's copy)

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
			hc.state.Store(connClosing)
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
			hc.ent.proto.Store(protoH2)
			hc.ent.server.Store(serverNetHTTP)
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
			buf, _ := hc.br.Peek(hc.br.Buffered())
			switch v, why := screenHead(buf); v {
			case headNotHTTP:
				hc.p.m.badInput.WithLabelValues("malformed").Inc()
				return
			case headBad:
				hc.refuseHead(why)
				return
			}
			handed = hc.handOver()
			return
		}
		if !ok {
			return
		}
		hc.w.reset(r)
		now := time.Now()
		hc.since.Store(now.UnixNano())
		if n := int64(hc.br.Buffered()); n != hc.readAhead {
			hc.readAhead = n
			hc.ent.readAhead.Store(n)
		}
		hc.p.serve(&hc.w, r, now)
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
	hc.setIdle(time.Now())
	hc.setReadDeadline(time.Now(), hc.p.cfg.IdleTimeout, false)
	// As in readRequest: a graceful stop closes the idle connection in
	// a while (closeIdle), not before the client could reuse it.
	<-hc.watchDone
	hc.watching = false
	return hc.cr.peeked && hc.state.CompareAndSwap(connIdle, connActive)
}

// setIdle records that the connection waits for a request from now on.
func (hc *h1conn) setIdle(now time.Time) {
	hc.since.Store(now.UnixNano())
	if hc.readAhead != 0 {
		hc.readAhead = 0
		hc.ent.readAhead.Store(0)
	}
	hc.state.Store(connIdle)
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
		hc.setIdle(now)
		// Not even during a graceful stop does an idle connection end
		// here: its last answer promised keep-alive, so the client may be
		// sending on it now; the stop closes it once it has been idle a
		// while (fastServer.closeIdle).
		if _, err := hc.br.Peek(1); err != nil {
			return nil, false, false
		}
		if !hc.state.CompareAndSwap(connIdle, connActive) {
			return nil, false, false // closed by a graceful stop
		}
	}
	headerDL := false
	for {
		buf, _ := hc.br.Peek(hc.br.Buffered())
		if len(buf) > 0 && (buf[0] == '\r' || buf[0] == '\n') {
			if n := blankLines(buf); n > 0 {
				hc.br.Discard(n)
				continue
			}
		}
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
		if len(buf) >= hc.br.Size() || headEnd(buf) {
			return nil, false, true // larger than the fast path reads, or bare LF line ends
		}
		if v, _ := screenHead(buf); v == headNotHTTP {
			// Answered at once, not once the header timeout runs out.
			hc.p.m.badInput.WithLabelValues("malformed").Inc()
			return nil, false, false
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

// closeWriter is a connection whose write side can be shut alone (TCP,
// unix and TLS connections).
type closeWriter interface{ CloseWrite() error }

// lingerClose ends a connection whose client is still sending a body
// nobody will read (a refused upload): closing at once would reset the
// connection and could destroy the answer before the client read it. So
// the write side is shut first (the client sees the end of the answer),
// and what the client still sends is read and dropped for a short while.
func (hc *h1conn) lingerClose() {
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
