package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1writer is the fast path's http.ResponseWriter, reused for every
// request on its connection. The head is written when the first body byte
// (or a flush, or the end of the handler) comes, so a response without
// Content-Length is chunked only when it has a body to chunk; it goes out
// with the body in one write when both fit the buffer.
type h1writer struct {
	hc *h1conn
	respFields
	req *http.Request

	status      int
	wroteHeader bool // the status is decided
	headOut     bool // the head is in the buffer
	bodyOK      bool // the response may carry a body
	chunked     bool
	length      int64 // declared Content-Length, -1 for none
	written     int64
	closeAfter  bool
	dropLength  bool // the Content-Length field is not sent (invalid, or trailers follow)
	err         error
}

func (w *h1writer) reset(r *http.Request) {
	clear(w.header)
	*w = h1writer{hc: w.hc, respFields: respFields{header: w.header}, req: r, length: -1, closeAfter: r.Close}
}

func (w *h1writer) Header() http.Header { return w.header }

// releaseUpstreamHeader ends the use of the upstream header (see
// respFields.useUpstreamHeader).
func (w *h1writer) releaseUpstreamHeader() { w.release(w.headOut, w.header) }

func (w *h1writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	checkWriteHeaderCode(code)
	if code < 200 && code != http.StatusSwitchingProtocols {
		// 103 Early Hints and the like go out at once; the final
		// response follows.
		w.writeStatusLine(code)
		w.writeFields()
		w.hc.out().WriteString("\r\n")
		if err := w.hc.out().Flush(); err != nil {
			w.fail(err)
		}
		return
	}
	w.wroteHeader, w.status = true, code
}

func (w *h1writer) Write(b []byte) (int, error) {
	if err := w.startBody(len(b)); err != nil {
		return 0, err
	}
	if !w.bodyOK {
		if w.req.Method == http.MethodHead {
			return len(b), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if len(b) == 0 {
		return 0, nil
	}
	if w.length >= 0 && w.written+int64(len(b)) > w.length {
		return 0, http.ErrContentLength
	}
	bw := w.hc.out()
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(b)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(b)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.fail(err)
	}
	return n, err
}

// checkWriteHeaderCode panics, as net/http's servers do, on a status code
// that cannot be written: a bug in the handler, never the client's doing.
func checkWriteHeaderCode(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
}

// WriteString saves io.WriteString a copy of s.
func (w *h1writer) WriteString(s string) (int, error) {
	if err := w.startBody(len(s)); err != nil {
		return 0, err
	}
	if !w.bodyOK || w.chunked || (w.length >= 0 && w.written+int64(len(s)) > w.length) {
		return w.Write([]byte(s))
	}
	n, err := w.hc.out().WriteString(s)
	w.written += int64(n)
	if err != nil {
		w.fail(err)
	}
	return n, err
}

// startBody writes the head if it is not out yet; n is the size of the
// first body write (0 when the handler ends or flushes before one).
func (w *h1writer) startBody(n int) error {
	if w.err != nil {
		return w.err
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headOut {
		w.writeHead(n > 0)
	}
	return w.err
}

// FlushError sends what is buffered (used by http.ResponseController).
func (w *h1writer) FlushError() error {
	if err := w.startBody(0); err != nil {
		return err
	}
	if err := w.hc.out().Flush(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

func (w *h1writer) Flush() { _ = w.FlushError() }

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *h1writer) SetReadDeadline(t time.Time) error {
	w.hc.dl = t
	return w.hc.c.SetReadDeadline(t)
}

func (w *h1writer) SetWriteDeadline(t time.Time) error { return w.hc.c.SetWriteDeadline(t) }

func (w *h1writer) watchClient() { w.hc.watchClient() }

// fail records a write error: the client is gone, so is every request
// context of the connection.
func (w *h1writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	w.closeAfter = true
	w.hc.cancel()
}

// writeHead puts the status line and fields in the buffer, with the
// framing the response needs: its own Content-Length, chunked when it has
// a body of unknown length (or trailers), Content-Length: 0 when it has
// none.
func (w *h1writer) writeHead(hasBody bool) {
	w.headOut = true
	h := w.header
	w.bodyOK = w.req.Method != http.MethodHead && w.status >= 200 &&
		w.status != http.StatusNoContent && w.status != http.StatusNotModified
	if c, ok := h["Connection"]; ok {
		if httpguts.HeaderValuesContainsToken(c, "close") {
			w.closeAfter = true
		}
		delete(h, "Connection")
	}
	if w.hc.p.stopping.Load() || w.hc.body.left > h1BodyDiscard {
		// A body left unread beyond what is worth discarding: the
		// connection ends after this answer.
		w.closeAfter = true
	}
	delete(h, "Transfer-Encoding")
	addLength := false
	if w.bodyOK {
		if cl := w.field("Content-Length"); cl != nil {
			n, err := strconv.ParseInt(strings.TrimSpace(firstOf(cl)), 10, 64)
			if err != nil || n < 0 || len(cl) != 1 {
				w.dropLength = true
			} else {
				w.length = n
			}
		}
		if _, ok := h["Trailer"]; ok {
			w.dropLength = true
			w.length = -1
		}
		switch {
		case w.length >= 0:
		case hasBody || h["Trailer"] != nil:
			w.chunked = true
		default:
			addLength = true
		}
	}
	w.writeStatusLine(w.status)
	w.writeFields()
	bw := w.hc.out()
	if w.field("Date") == nil {
		bw.WriteString("Date: ")
		bw.Write(time.Now().UTC().AppendFormat(bw.AvailableBuffer(), http.TimeFormat))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if addLength {
		bw.WriteString("Content-Length: 0\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	if _, err := bw.WriteString("\r\n"); err != nil {
		w.fail(err)
	}
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (w *h1writer) writeStatusLine(code int) {
	bw := w.hc.out()
	if code == http.StatusOK {
		bw.WriteString("HTTP/1.1 200 OK\r\n")
		return
	}
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// writeFields writes the header map, leaving out trailers and names that
// are not tokens, with any CR or LF in a value made a space (as net/http
// does).
func (w *h1writer) writeFields() {
	for k, vv := range w.header {
		if !w.overridden(k) && !strings.HasPrefix(k, http.TrailerPrefix) {
			w.writeField(k, vv)
		}
	}
	for k, vv := range w.up {
		if !isHop(k) {
			w.writeField(k, vv)
		}
	}
}

func (w *h1writer) writeField(k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) || (w.dropLength && k == "Content-Length") {
		return
	}
	bw := w.hc.out()
	for _, v := range vv {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(k)
		bw.WriteString(": ")
		bw.WriteString(trimOWS(v))
		bw.WriteString("\r\n")
	}
}

// finish completes the response after the handler returned and sends it.
// It returns false when the connection cannot carry another request.
func (w *h1writer) finish() bool {
	if w.startBody(0) != nil {
		return false
	}
	bw := w.hc.out()
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	}
	if w.bodyOK && w.length >= 0 && w.written < w.length {
		// Cut short: only closing tells the client.
		w.closeAfter = true
	}
	if err := bw.Flush(); err != nil {
		w.fail(err)
		return false
	}
	// An idle connection holds no write buffer.
	w.hc.releaseWriter()
	return true
}

// writeTrailers writes the trailer fields, those set with
// http.TrailerPrefix (the way the proxy sets them).
func (w *h1writer) writeTrailers() {
	bw := w.hc.out()
	write := func(k string, vv []string) {
		if !httpguts.ValidHeaderFieldName(k) {
			return
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			write(name, vv)
		}
	}
}
