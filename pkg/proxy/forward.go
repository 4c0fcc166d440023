package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Request outcomes, the label values of zdqueue_requests_total.
const (
	outcomeProxied      = "proxied"       // answered by a backend straight away
	outcomeReplayed     = "replayed"      // answered by a backend after being held
	outcomeOverflow     = "overflow"      // 503: the buffer was full
	outcomeEvicted      = "evicted"       // 503: pushed out by a newer request (overflow oldest)
	outcomeExpired      = "expired"       // 503: held longer than the age limit
	outcomeFlushed      = "flushed"       // 503: flushed by an operator
	outcomeShutdown     = "shutdown"      // 503: zd-queue was stopping
	outcomeTooLarge     = "too_large"     // 413: body larger than the buffer allows
	outcomeNoBackend    = "no_backend"    // 503: nothing ready and buffering is off
	outcomeBackendError = "backend_error" // 502/504: the backend failed after the request may have been processed
	outcomeClientGone   = "client_gone"   // the client went away first
	outcomeBadRequest   = "bad_request"   // 400: the request could not be forwarded as sent
)

// reqBody is a client's request body as seen by one or more forwarding
// attempts: either streamed from the client (retryable only while nothing
// has been read) or held in memory (always retryable).
type reqBody struct {
	src  io.ReadCloser // the client's body; nil when empty
	held []byte        // the whole body, once read into memory
	read atomic.Int64  // bytes taken from src by attempts
	size int64         // content length as announced, -1 unknown
}

// untouched reports whether another attempt can still send the whole body.
func (rb *reqBody) untouched() bool {
	return rb.src == nil || rb.held != nil || rb.read.Load() == 0
}

// empty reports whether the request has no body at all.
func (rb *reqBody) empty() bool { return rb.src == nil && rb.held == nil }

// reader returns the body for one attempt, or nil for none.
func (rb *reqBody) reader() io.ReadCloser {
	switch {
	case rb.held != nil:
		return io.NopCloser(bytes.NewReader(rb.held))
	case rb.src != nil:
		return &countingBody{rb: rb}
	}
	return nil
}

// countingBody streams the client's body to the backend counting what it
// took. Close is a no-op: the transport closes a request body when an attempt
// fails, and the next attempt may still need it; the server closes the real
// body when the handler returns.
type countingBody struct{ rb *reqBody }

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rb.src.Read(p)
	c.rb.read.Add(int64(n))
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

// clientBodyError is the client's request body failing to read (a
// malformed or overflowing chunk size, a body cut short, too slow): the
// client's fault, not the backend's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// refuseBody answers a request whose body could not be read: 408 when it
// was too slow, else 400, counted as bad input; the connection is not
// reused (where the next request would start is unknown).
func (p *Proxy) refuseBody(w http.ResponseWriter, r *http.Request, err error) attempt {
	p.m.badInput.WithLabelValues("body").Inc()
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		p.plainError(w, http.StatusRequestTimeout, "request body not received in time")
	} else {
		p.plainError(w, http.StatusBadRequest, "malformed request body ("+err.Error()+")")
	}
	return attempt{outcome: outcomeBadRequest}
}

func (c *countingBody) Close() error { return nil }

// smallBody is the largest response body read under the backend timeout
// that bounds the response headers.
const smallBody = 1 << 20

// attempt is the result of trying one backend.
type attempt struct {
	outcome string // set when the request is finished (answered or abandoned)
	retry   bool   // nothing reached the backend (or it is safe to resend): try another
	again   bool   // with retry: the same backend may be tried again (a stale pooled connection)
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends r to b and copies the response to w. It answers the client
// unless the attempt may be retried.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, b *backend, body *reqBody, replayed bool) attempt {
	ctx := r.Context()
	b.acquire()
	released := false
	defer func() {
		if !released {
			b.release()
		}
	}()

	now := time.Now()
	bc, err := b.pool.get(ctx, !idempotent(r.Method) || !body.empty(), now)
	if err != nil {
		if ctx.Err() != nil {
			return attempt{outcome: outcomeClientGone}
		}
		b.markDown(500 * time.Millisecond)
		if body.untouched() {
			p.m.retries.WithLabelValues("connect").Inc()
			return attempt{retry: true}
		}
		p.plainError(w, http.StatusBadGateway, "cannot connect to the backend")
		return attempt{outcome: outcomeBackendError}
	}
	// Until the response headers are in, the backend deadline bounds the
	// exchange; a client that goes away meanwhile is noticed when its
	// answer is written. Streams and big bodies, which have no deadline,
	// get a watcher (below) that unblocks the backend I/O when the client
	// goes away. Not registering it for every request saves five
	// allocations and a lock on the request context per request.
	stop := func() bool { return true }
	defer func() { stop() }()

	uri := backendURI(r)
	// One deadline covers writing the request and reading the response
	// headers; deadline changes cost a timer update each, so a busy
	// connection keeps the one it has while it is at most 1/64 of the
	// timeout older than a fresh one would be.
	if !bc.reused {
		now = time.Now() // after the dial
	}
	bc.bound(now, p.cfg.BackendTimeout)
	bc.read = 0
	sentBefore := body.read.Load()
	werr := writeRequest(bc.bw, r, uri, body)
	if werr == nil {
		werr = bc.bw.Flush()
	}
	var resp *http.Response
	if werr != nil {
		// (Declared here: errors.As makes it escape, an allocation that
		// only a failed write should cost.)
		var cbe *clientBodyError
		if errors.As(werr, &cbe) {
			// Half a request went to the backend: its connection is done.
			bc.c.Close()
			if ctx.Err() != nil {
				return attempt{outcome: outcomeClientGone}
			}
			return p.refuseBody(w, r, cbe.err)
		}
	}
	if werr == nil {
		resp, err = p.readResponse(w, bc, r)
	} else if bc.read == 0 && body.read.Load() > sentBefore {
		// The backend may have answered before taking the whole body (a
		// 413 or 401 for an upload) and stopped reading: its answer is the
		// response, not a failure.
		bc.c.SetReadDeadline(time.Now().Add(time.Second))
		if early, rerr := p.readResponse(w, bc, r); rerr == nil {
			resp, early.Close = early, true
		} else {
			err = werr
		}
	} else {
		err = werr
	}
	if err != nil {
		bc.c.Close()
		if ctx.Err() != nil {
			return attempt{outcome: outcomeClientGone}
		}
		noAnswer := bc.read == 0
		// A pooled connection the backend closed just as it was reused
		// (the keep-alive race): resend an idempotent request whose body
		// is still whole (RFC 9112 section 9.3.1). Others may have been
		// processed, so they are not resent.
		if noAnswer && bc.reused && idempotent(r.Method) && body.read.Load() == sentBefore && body.untouched() {
			b.pool.suspect()
			p.m.retries.WithLabelValues("stale_connection").Inc()
			return attempt{retry: true, again: true}
		}
		if noAnswer && p.cfg.RetryIdempotent && body.empty() && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			p.m.retries.WithLabelValues("idempotent").Inc()
			return attempt{retry: true}
		}
		p.log.Warn("backend failed", "backend", b.id, "method", r.Method, "path", r.URL.Path, "err", err)
		code := http.StatusBadGateway
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusGatewayTimeout
		}
		p.plainError(w, code, "backend failed before answering")
		return attempt{outcome: outcomeBackendError}
	}
	if resp.ContentLength < 0 || resp.ContentLength > smallBody || resp.StatusCode == http.StatusSwitchingProtocols {
		// Streams, tunnels and big bodies may take longer than the header
		// bound; a small body arrives right behind its headers. A client
		// that goes away mid-stream unblocks the backend I/O.
		bc.unbound()
		watchClient(w)
		stop = context.AfterFunc(ctx, func() { bc.c.SetDeadline(time.Unix(1, 0)) })
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The exchange is over as far as draining is concerned: the
		// upgraded stream is a tunnel, not a request in flight.
		b.release()
		released = true
		stop()
		return p.tunnel(w, r, resp, bc)
	}

	// The backend's header fields go to the client without a copy when the
	// writer can send them as they are (the HTTP/2 server's); they must
	// then be done with before the connection, whose response they belong
	// to, goes back to the pool.
	uw, direct := w.(upstreamHeaderWriter)
	direct = direct && len(resp.Trailer) == 0 && connectionListed(resp.Header["Connection"]) == nil
	if direct {
		uw.useUpstreamHeader(resp.Header)
	} else {
		h := w.Header()
		copyResponseHeader(h, resp.Header)
		for k := range resp.Trailer {
			h.Add("Trailer", k)
		}
	}
	w.WriteHeader(resp.StatusCode)
	drained, err := p.copyBody(w, resp)
	if direct {
		uw.releaseUpstreamHeader()
	}
	if err != nil {
		if drained && !resp.Close && stop() {
			// The client went away after the backend's whole answer was
			// read: the connection is as good as ever.
			b.pool.put(bc)
		} else {
			bc.c.Close()
		}
		if ctx.Err() != nil {
			return attempt{outcome: outcomeClientGone}
		}
		// Headers are out: the only honest signal left is an aborted
		// response (reset stream or closed connection), never a truncated
		// one that looks complete.
		p.m.requests.WithLabelValues(outcomeBackendError).Inc()
		p.log.Warn("backend response cut short", "backend", b.id, "err", err)
		b.release()
		released = true
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		h := w.Header()
		for k, vv := range resp.Trailer {
			h[http.TrailerPrefix+k] = vv
		}
	}
	if resp.Close || !stop() {
		bc.c.Close()
	} else {
		b.pool.put(bc)
	}
	return attempt{outcome: okOutcome(replayed)}
}

// upstreamHeaderWriter is a ResponseWriter that can send a backend's
// response header fields without their being copied into Header() first
// (see h2writer.useUpstreamHeader).
type upstreamHeaderWriter interface {
	useUpstreamHeader(h http.Header)
	releaseUpstreamHeader()
}

// readResponse reads the backend's final response, passing 1xx
// informational ones (103 Early Hints) on to the client.
func (p *Proxy) readResponse(w http.ResponseWriter, bc *bconn, r *http.Request) (*http.Response, error) {
	for i := 0; ; i++ {
		resp, ok := readResponseFast(bc, r)
		if !ok {
			var err error
			if resp, err = http.ReadResponse(bc.br, r); err != nil {
				return nil, err
			}
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			// net/http's reader takes any three digits ("099"), which no
			// response writer can send: the backend failed.
			return nil, fmt.Errorf("backend sent status %d", resp.StatusCode)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if i >= 8 {
			return nil, errors.New("backend sent too many 1xx responses")
		}
		if resp.StatusCode == http.StatusContinue {
			continue // the client's Expect was not forwarded; the 100 is ours
		}
		h := w.Header()
		for k, vv := range resp.Header {
			h[k] = vv
		}
		w.WriteHeader(resp.StatusCode)
		for k := range resp.Header {
			delete(h, k)
		}
	}
}

// idempotent reports whether a method is idempotent (RFC 9110 section 9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func okOutcome(replayed bool) string {
	if replayed {
		return outcomeReplayed
	}
	return outcomeProxied
}

// copyBody streams resp's body to w. Responses of unknown length (chunked,
// SSE) are flushed after every read, so streams pass through unbuffered.
// On failure, drained reports whether the backend's whole body had been
// read (only the client side failed), so its connection can be reused.
func (p *Proxy) copyBody(w http.ResponseWriter, resp *http.Response) (drained bool, err error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	stream := resp.ContentLength < 0
	var rc *http.ResponseController
	if stream {
		rc = http.NewResponseController(w)
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return rerr == io.EOF, werr
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return rerr == io.EOF, err
				}
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

// backendURI is the request target sent to the backend: an HTTP/1.1
// client's own origin-form target as it sent it (the server checked it),
// else the one r.URL gives.
func backendURI(r *http.Request) string {
	if r.ProtoMajor == 1 && len(r.RequestURI) > 0 && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	if r.URL.Path == "" && r.URL.Opaque == "" {
		u := *r.URL
		u.Path = "/"
		return u.RequestURI()
	}
	return r.URL.RequestURI()
}

// plainError answers with a short text error that says who answered.
func (p *Proxy) plainError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	body := "zd-queue: " + msg + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	io.WriteString(w, body)
}
