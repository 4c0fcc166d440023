package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// An HTTP/2 stream: its handler goroutine, its context, and its
// http.ResponseWriter (the frames it writes are in h2write.go).

// h2stream is one request/response exchange. It is also its request's
// context (see Done).
type h2stream struct {
	c    *h2conn
	id   uint32
	req  *http.Request
	w    h2writer
	url  url.URL
	body h2body

	cmu    sync.Mutex
	doneCh chan struct{} // made when first asked for
	ctxErr error

	ws      *h2ws // an RFC 8441 WebSocket's session, run after the handshake
	sendWin int64 // under c.fmu
	opens   bool  // the first stream open on the connection: it stamps the connection's since

	// Request body, filled by the reader goroutine.
	bmu         sync.Mutex
	bcond       sync.Cond
	buf         []byte
	bodyErr     error           // io.EOF once END_STREAM came, or why the body ended
	tunnel      bool            // an RFC 8441 WebSocket's stream: see giveBackSplit (under bmu)
	trailerKeys map[string]bool // announced trailer fields (set before the handler starts)
	trailerVals http.Header     // received trailer values, until the reader hands them over
	deadline    *time.Timer     // body read deadline (handler goroutine only)
	recvWin     atomic.Int64    // what the peer may still send on the stream
	declared    int64           // content-length, -1 unknown
	received    int64           // reader goroutine only
	unacked     atomic.Int64    // consumed, not yet given back with WINDOW_UPDATE
	remoteEnd   atomic.Bool     // END_STREAM received
	reset       atomic.Bool
	peerReset   atomic.Bool // the client reset it
	done        atomic.Bool // the handler finished
}

// run serves the stream's request and completes its response.
func (st *h2stream) run() {
	c := st.c
	defer c.handlers.Done()
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.p.m.panics.Inc()
				c.p.log.Error("recovered a panic while serving a request", "detail", fmt.Sprint(v))
			}
			if !st.reset.Load() {
				c.resetStream(st.id, http2.ErrCodeInternal)
			}
		}
		st.cleanup()
	}()
	now := time.Now()
	if st.opens {
		c.hc.since.Store(now.UnixNano())
	}
	c.p.serve(&st.w, st.req, now)
	if st.ws != nil {
		// An RFC 8441 WebSocket: its session runs on the stream now that
		// the handshake was answered and counted (h2ws.go).
		st.ws.run()
	}
	st.w.finish()
}

// refuse answers a request that could not be read (its header block was
// too large) with code.
func (st *h2stream) refuse(code int) {
	c := st.c
	defer c.handlers.Done()
	defer st.cleanup()
	if st.opens {
		c.hc.since.Store(time.Now().UnixNano())
	}
	st.w = h2writer{st: st, length: -1}
	st.req = &http.Request{Method: http.MethodGet, ProtoMajor: 2}
	c.p.plainError(&st.w, code, http.StatusText(code))
	st.w.finish()
}

// cleanup runs when the stream's handler is done: a body the client is
// still sending is refused with RST_STREAM(NO_ERROR) (the answer is
// complete), its unread bytes open the connection window again.
func (st *h2stream) cleanup() {
	c := st.c
	st.done.Store(true)
	st.bmu.Lock()
	unread := int64(len(st.buf))
	tunnel := st.tunnel
	st.buf = nil
	if st.bodyErr == nil {
		st.bodyErr = errStreamClosed
	}
	st.bmu.Unlock()
	if !st.remoteEnd.Load() && !st.reset.Load() {
		st.reset.Store(true)
		c.write(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeNo) }, true)
		c.smu.Lock()
		c.noteResetLocked(st.id)
		c.smu.Unlock()
	}
	if unread > 0 && !tunnel {
		c.giveBack(nil, unread) // a tunnel's gave the connection's window back on arrival
	}
	st.cancelCtx()
	if st.deadline != nil {
		st.deadline.Stop()
	}
	c.finishStream(st)
}

// abort ends the stream from outside its handler (reset by the client,
// protocol error, connection gone): reads and writes fail from now on.
func (st *h2stream) abort(err error) {
	st.reset.Store(true)
	st.cancelCtx()
	st.bmu.Lock()
	if st.bodyErr == nil || st.bodyErr == io.EOF {
		st.bodyErr = err
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
	c := st.c
	c.fmu.Lock()
	c.fcond.Broadcast()
	c.fmu.Unlock()
}

// The stream is the context of its request: done when the client resets
// the stream, the connection ends, or the handler has finished. (A
// context.WithCancel per stream would cost four allocations.)

func (st *h2stream) Deadline() (time.Time, bool) { return time.Time{}, false }

func (st *h2stream) Done() <-chan struct{} {
	st.cmu.Lock()
	defer st.cmu.Unlock()
	if st.doneCh == nil {
		st.doneCh = make(chan struct{})
		if st.ctxErr != nil {
			close(st.doneCh)
		}
	}
	return st.doneCh
}

func (st *h2stream) Err() error {
	st.cmu.Lock()
	defer st.cmu.Unlock()
	return st.ctxErr
}

func (st *h2stream) Value(key any) any { return st.c.ctx.Value(key) }

func (st *h2stream) cancelCtx() {
	st.cmu.Lock()
	defer st.cmu.Unlock()
	if st.ctxErr == nil {
		st.ctxErr = context.Canceled
		if st.doneCh != nil {
			close(st.doneCh)
		}
	}
}

// h2writer is a stream's http.ResponseWriter. Frames go into the
// connection's buffer; the response is flushed when it completes (or on
// Flush), together with whatever other streams wrote meanwhile.
type h2writer struct {
	st         *h2stream
	respFields // header made when first asked for

	status      int
	wroteHeader bool
	headersSent bool
	bodyOK      bool
	ended       bool
	length      int64
	written     int64
	err         error
}

func (w *h2writer) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// releaseUpstreamHeader ends the use of the upstream header (see
// respFields.useUpstreamHeader).
func (w *h2writer) releaseUpstreamHeader() {
	if w.up != nil && !w.headersSent {
		w.Header() // made for the copy
	}
	w.release(w.headersSent, w.header)
}

func (w *h2writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	checkWriteHeaderCode(code)
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.sendHeaders(code, false, true)
		return
	}
	w.wroteHeader, w.status = true, code
}

// start sends the response headers if they are not out yet; they end the
// stream when there is no body to follow.
func (w *h2writer) start(end bool) error {
	if w.err != nil {
		return w.err
	}
	if !w.headersSent {
		w.prepare()
		w.headersSent = true
		if end || !w.bodyOK {
			w.ended = !w.hasTrailers()
		}
		w.sendHeaders(w.status, w.ended, false)
	}
	return w.err
}

// prepare settles the status and what the body may be, before the
// headers go out.
func (w *h2writer) prepare() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.bodyOK = w.st.req.Method != http.MethodHead && w.status >= 200 &&
		w.status != http.StatusNoContent && w.status != http.StatusNotModified
	if cl := w.field("Content-Length"); len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		}
	}
}

// writeWhole sends a response whose entire body is b as one HEADERS and
// one DATA frame ending the stream, in one go: the common small response
// costs one lock and one window reservation, and no empty DATA frame to
// end the stream. It reports false (having sent nothing) when b does not
// fit one frame or the window; the caller then takes the general path.
func (w *h2writer) writeWhole(b []byte) bool {
	st := w.st
	c := st.c
	if st.reset.Load() || !c.tryWindow(st, len(b)) {
		return false
	}
	maxFrame := c.peerFrameSize()
	w.headersSent, w.ended = true, true
	err := c.write(func() error {
		if err := w.encodeHeaders(w.status, false, maxFrame); err != nil {
			return err
		}
		return c.fr.WriteData(st.id, true, b)
	}, true)
	if err != nil {
		w.fail(err)
		return true
	}
	w.written += int64(len(b))
	return true
}

func (w *h2writer) hasTrailers() bool {
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func (w *h2writer) Write(b []byte) (int, error) {
	if w.err == nil && !w.headersSent && len(b) > 0 {
		w.prepare()
		if w.bodyOK && w.length == int64(len(b)) && !w.hasTrailers() && w.writeWhole(b) {
			if w.err != nil {
				return 0, w.err
			}
			return len(b), nil
		}
	}
	if err := w.start(false); err != nil {
		return 0, err
	}
	if !w.bodyOK {
		if w.st.req.Method == http.MethodHead {
			return len(b), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(b)) > w.length {
		return 0, http.ErrContentLength
	}
	n, err := w.sendData(b, false)
	w.written += int64(n)
	return n, err
}

func (w *h2writer) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func (w *h2writer) FlushError() error {
	if err := w.start(false); err != nil {
		return err
	}
	c := w.st.c
	return c.requestFlush()
}

func (w *h2writer) Flush() { _ = w.FlushError() }

// SetReadDeadline bounds the wait for the request body (used by
// http.ResponseController).
func (w *h2writer) SetReadDeadline(t time.Time) error {
	st := w.st
	if st.deadline != nil {
		st.deadline.Stop()
		st.deadline = nil
	}
	if t.IsZero() {
		return nil
	}
	st.deadline = time.AfterFunc(time.Until(t), func() {
		st.bmu.Lock()
		if st.bodyErr == nil {
			st.bodyErr = os.ErrDeadlineExceeded
		}
		st.bcond.Broadcast()
		st.bmu.Unlock()
	})
	return nil
}

// finish completes the response after the handler returned.
func (w *h2writer) finish() {
	if w.start(true) != nil || w.ended {
		w.st.c.requestFlush()
		return
	}
	if w.bodyOK && w.length >= 0 && w.written < w.length {
		// Cut short: only a reset tells the client.
		w.st.c.resetStream(w.st.id, http2.ErrCodeInternal)
		return
	}
	w.ended = true
	if w.hasTrailers() {
		w.sendTrailers()
		return
	}
	w.sendData(nil, true)
}

func (w *h2writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}
