package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

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
	c.p.ServeHTTP(&st.w, st.req)
	st.w.finish()
}

// refuse answers a request that could not be read (its header block was
// too large) with code.
func (st *h2stream) refuse(code int) {
	c := st.c
	defer c.handlers.Done()
	defer st.cleanup()
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
	st.buf = nil
	if st.bodyErr == nil {
		st.bodyErr = errStreamClosed
	}
	st.bmu.Unlock()
	if !st.remoteEnd.Load() && !st.reset.Load() {
		st.reset.Store(true)
		c.write(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeNo) }, true)
	}
	if unread > 0 {
		c.giveBack(nil, unread)
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

// h2body is a request body arriving in DATA frames.
type h2body struct{ st *h2stream }

func (b *h2body) Read(p []byte) (int, error) {
	st := b.st
	st.bmu.Lock()
	for len(st.buf) == 0 && st.bodyErr == nil {
		st.bcond.Wait()
	}
	if len(st.buf) > 0 && len(p) > 0 {
		n := copy(p, st.buf)
		st.buf = st.buf[n:]
		if len(st.buf) == 0 {
			st.buf = nil
		}
		st.bmu.Unlock()
		st.c.giveBack(st, int64(n))
		return n, nil
	}
	err := st.bodyErr
	if err == io.EOF && st.trailerVals != nil {
		for k, vv := range st.trailerVals {
			st.req.Trailer[k] = vv
		}
		st.trailerVals = nil
	}
	st.bmu.Unlock()
	return 0, err
}

func (b *h2body) Close() error { return nil }

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

// sendHeaders writes a HEADERS frame (and CONTINUATIONs) with the status
// and the header map.
func (w *h2writer) sendHeaders(code int, end, flush bool) {
	st := w.st
	c := st.c
	if st.reset.Load() {
		w.fail(errStreamClosed)
		return
	}
	maxFrame := c.peerFrameSize()
	err := c.write(func() error { return w.encodeHeaders(code, end, maxFrame) }, flush)
	if err != nil {
		w.fail(err)
	}
}

// encodeHeaders writes the HEADERS (and CONTINUATION) frames for the
// status and the header map. It runs under the connection's write lock.
func (w *h2writer) encodeHeaders(code int, end bool, maxFrame int) error {
	c := w.st.c
	enc := c.hpe
	buf := enc.begin(c.hbuf[:0])
	buf = enc.status(buf, code)
	date := false
	for k, vv := range w.header {
		if w.overridden(k) || strings.HasPrefix(k, http.TrailerPrefix) || isH2ConnectionField(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		date = date || k == "Date"
		buf = w.encodeField(buf, k, vv)
	}
	for k, vv := range w.up {
		if isHop(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		date = date || k == "Date"
		buf = w.encodeField(buf, k, vv)
	}
	if !date && code >= 200 {
		buf = enc.field(buf, "date", hpackStaticName["date"], time.Now().UTC().Format(http.TimeFormat))
	}
	c.hbuf = buf
	return writeHeaderBlock(c.fr, w.st.id, end, buf, maxFrame)
}

func (w *h2writer) encodeField(buf []byte, k string, vv []string) []byte {
	wn := wireH2(k)
	for _, v := range vv {
		if httpguts.ValidHeaderFieldValue(v) {
			buf = w.st.c.hpe.field(buf, wn.name, wn.static, v)
		}
	}
	return buf
}

// sendTrailers ends the stream with the trailer fields.
func (w *h2writer) sendTrailers() {
	st := w.st
	c := st.c
	maxFrame := c.peerFrameSize()
	err := c.write(func() error {
		buf := c.hpe.begin(c.hbuf[:0])
		for k, vv := range w.header {
			name, ok := strings.CutPrefix(k, http.TrailerPrefix)
			if !ok || !httpguts.ValidHeaderFieldName(name) || isH2ConnectionField(name) {
				continue
			}
			wn := wireH2(http.CanonicalHeaderKey(name))
			for _, v := range vv {
				if httpguts.ValidHeaderFieldValue(v) {
					buf = c.hpe.field(buf, wn.name, wn.static, v)
				}
			}
		}
		c.hbuf = buf
		return writeHeaderBlock(c.fr, st.id, true, buf, maxFrame)
	}, true)
	if err != nil {
		w.fail(err)
	}
}

// writeHeaderBlock writes a header block as HEADERS plus CONTINUATION
// frames of at most maxFrame bytes.
func writeHeaderBlock(fr *http2.Framer, id uint32, end bool, block []byte, maxFrame int) error {
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > maxFrame {
			frag = frag[:maxFrame]
		}
		block = block[len(frag):]
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sendData writes b as DATA frames within the peer's windows, waiting
// (after a flush) for window when there is none.
func (w *h2writer) sendData(b []byte, end bool) (int, error) {
	st := w.st
	c := st.c
	if len(b) == 0 {
		if !end {
			return 0, nil
		}
		if st.reset.Load() {
			return 0, errStreamClosed
		}
		err := c.write(func() error { return c.fr.WriteData(st.id, true, nil) }, true)
		if err != nil {
			w.fail(err)
		}
		return 0, err
	}
	sent := 0
	for len(b) > 0 {
		n, err := c.takeWindow(st, len(b))
		if err != nil {
			w.fail(err)
			return sent, err
		}
		chunk := b[:n]
		b = b[n:]
		last := end && len(b) == 0
		if err := c.write(func() error { return c.fr.WriteData(st.id, last, chunk) }, false); err != nil {
			w.fail(err)
			return sent, err
		}
		sent += n
	}
	return sent, nil
}

// takeWindow reserves up to want bytes of send window for st, waiting
// for WINDOW_UPDATE when there is none.
func (c *h2conn) takeWindow(st *h2stream, want int) (int, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	for {
		if st.reset.Load() || c.closedSend {
			return 0, errStreamClosed
		}
		if st.sendWin > 0 && c.connSendWin > 0 {
			n := int64(min(want, c.peerMaxFrame))
			n = min(n, st.sendWin, c.connSendWin)
			st.sendWin -= n
			c.connSendWin -= n
			return int(n), nil
		}
		// Out of window: the client must see what was sent to give more.
		c.fmu.Unlock()
		c.requestFlush()
		c.fmu.Lock()
		if st.reset.Load() || c.closedSend || (st.sendWin > 0 && c.connSendWin > 0) {
			continue
		}
		c.fcond.Wait()
	}
}

// tryWindow reserves exactly n bytes of send window for st if both
// windows have them and n fits one frame; it never waits.
func (c *h2conn) tryWindow(st *h2stream, n int) bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.closedSend || n > c.peerMaxFrame || st.sendWin < int64(n) || c.connSendWin < int64(n) {
		return false
	}
	st.sendWin -= int64(n)
	c.connSendWin -= int64(n)
	return true
}

func (c *h2conn) peerFrameSize() int {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return c.peerMaxFrame
}

// isH2ConnectionField reports the fields HTTP/2 forbids (RFC 9113
// section 8.2.2); the proxy never sends them on.
func isH2ConnectionField(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// h2Common maps the lowercase wire names of common fields to their
// canonical form and back, so most fields cost no allocation either way.
var h2Common = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Origin", "Age", "Alt-Svc", "Authorization", "Cache-Control",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expect",
		"Expires", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Range", "If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards",
		"Origin", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer",
		"Refresh", "Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Te",
		"Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate", "X-Content-Type-Options",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Priority", "X-Request-Id",
		"Zd-Backend", "Cache-Status", "Early-Data",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// h2WireName is a header key's HTTP/2 form: its lowercase name and that
// name's index in the HPACK static table (0 if none).
type h2WireName struct {
	name   string
	static uint8
}

// h2Wire maps the canonical keys of common fields, and of every name in
// the static table, to their wire form.
var h2Wire = func() map[string]h2WireName {
	m := map[string]h2WireName{}
	for low, k := range h2Common {
		m[k] = h2WireName{low, hpackStaticName[low]}
	}
	for low, idx := range hpackStaticName {
		if low[0] != ':' {
			m[http.CanonicalHeaderKey(low)] = h2WireName{low, idx}
		}
	}
	return m
}()

// canonicalH2 returns the canonical key of a lowercase wire field name.
func canonicalH2(name string) string {
	if k, ok := h2Common[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// wireH2 returns the wire form of a header key.
func wireH2(k string) h2WireName {
	if w, ok := h2Wire[k]; ok {
		return w
	}
	low := strings.ToLower(k)
	return h2WireName{low, hpackStaticName[low]}
}
