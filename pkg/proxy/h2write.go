package proxy

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// Writing HTTP/2 frames: the connection's shared write buffer under wmu,
// the flusher, and a stream's HEADERS, DATA and trailers.

// resetStream sends RST_STREAM for id and forgets the stream.
func (c *h2conn) resetStream(id uint32, code http2.ErrCode) {
	c.write(func() error { return c.fr.WriteRSTStream(id, code) }, true)
	c.smu.Lock()
	st := c.streams[id]
	c.noteResetLocked(id)
	c.smu.Unlock()
	if st != nil {
		st.abort(fmt.Errorf("stream reset (%v)", code))
	}
}

// requestFlush has what the streams wrote sent (by the flusher).
func (c *h2conn) requestFlush() error { return c.write(nil, true) }

// write runs fn (frame writes; nil for none) under the write lock, then
// asks for a flush unless another writer is waiting (it will ask) or
// flush is false.
func (c *h2conn) write(fn func() error, flush bool) error {
	c.waiting.Add(1)
	c.wmu.Lock()
	c.waiting.Add(-1)
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if fn != nil {
		if err := fn(); err != nil {
			c.werr = err
			return err
		}
	}
	if flush && c.waiting.Load() == 0 {
		// The flusher sends it, with whatever other streams write before
		// it gets to run.
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flusher sends what the streams wrote. It runs after the goroutines
// that were ready when it was woken (the other responses coming in from
// backends at the same time), so one write carries many responses, as an
// event loop would send them. It also sends the GOAWAY a graceful stop
// asks for (see askGoAway).
func (c *h2conn) flusher() {
	defer c.flushWG.Done()
	goAwaySent := false
	for {
		select {
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		if !goAwaySent && c.goAwayAsked.Load() {
			goAwaySent = true
			c.goAwayNow(http2.ErrCodeNo)
		}
		runtime.Gosched()
		c.flushNow()
	}
}

// askGoAway has the flusher send GOAWAY(NO_ERROR), once: for a graceful
// stop, which must not wait on a connection's write lock (a client that
// does not read can hold it) nor start a goroutine nobody waits for.
func (c *h2conn) askGoAway() {
	if c.goAwayAsked.CompareAndSwap(false, true) {
		select {
		case c.kick <- struct{}{}:
		default: // the flusher is awake already and sees goAwayAsked
		}
	}
}

// flushNow sends what is buffered.
func (c *h2conn) flushNow() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil || c.bw.Buffered() == 0 {
		return
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		c.cancel()
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
