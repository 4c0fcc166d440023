package proxy

import (
	"errors"
	"io"

	"golang.org/x/net/http2"
)

// HTTP/2 flow control, both ways: DATA coming in (the windows we
// advertise, opened again as the request body is read) and the peer's
// windows bounding what the streams send.

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		c.fmu.Lock()
		defer c.fmu.Unlock()
		c.connSendWin += int64(f.Increment)
		if c.connSendWin > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.fcond.Broadcast()
		return nil
	}
	st, idle := c.lookup(f.StreamID) // smu, before fmu (see h2conn)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st == nil {
		return nil
	}
	c.fmu.Lock()
	st.sendWin += int64(f.Increment)
	over := st.sendWin > h2MaxWindow
	if !over {
		c.fcond.Broadcast()
	}
	c.fmu.Unlock()
	if over {
		// A stream error (RFC 9113 section 6.9.1), answered here: fmu is
		// no longer held, which the reset's abort takes.
		c.resetStream(st.id, http2.ErrCodeFlowControl)
	}
	return nil
}

// onData takes a DATA frame into its stream's body.
func (c *h2conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	if c.connRecv.Add(-n) < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.smu.Lock()
	st, idle := c.streams[f.StreamID], f.StreamID > c.maxID
	late := st == nil && !idle && c.lateFrameLocked(f.StreamID)
	c.smu.Unlock()
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st == nil || st.remoteEnd.Load() || st.done.Load() || st.reset.Load() {
		// Nobody will read it: the connection's window opens again at
		// once.
		c.giveBack(nil, n)
		switch {
		case st == nil && !late, st != nil && st.peerReset.Load(),
			st != nil && st.remoteEnd.Load() && !st.reset.Load():
			// DATA on a stream the client closed (END_STREAM, RST_STREAM),
			// or that is long closed: a stream error (RFC 9113 sections
			// 5.1 and 6.1). The reset is remembered, so what else is in
			// flight is not answered each time.
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		// Otherwise we reset the stream and the client sent this before
		// it saw that: ignored (section 5.4.2).
		return nil
	}
	if st.recvWin.Add(-n) < 0 {
		c.giveBack(nil, n)
		c.resetStream(st.id, http2.ErrCodeFlowControl)
		st.abort(errors.New("client overran the stream window"))
		return nil
	}
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.giveBack(st, pad) // padding is never read
	}
	st.received += int64(len(data))
	if st.declared >= 0 && (st.received > st.declared || (f.StreamEnded() && st.received != st.declared)) {
		c.resetStream(st.id, http2.ErrCodeProtocol)
		st.abort(errors.New("request body length differs from content-length"))
		return nil
	}
	st.bmu.Lock()
	st.buf = append(st.buf, data...)
	if f.StreamEnded() {
		st.remoteEnd.Store(true)
		if st.bodyErr == nil {
			st.bodyErr = io.EOF
		}
	}
	tunnel := st.tunnel
	st.bcond.Broadcast()
	st.bmu.Unlock()
	if tunnel && len(data) > 0 {
		// A WebSocket stream's bytes never hold the connection's window
		// (a session whose backend stops reading would starve every
		// stream of the connection); its own window bounds them.
		c.giveBackSplit(nil, 0, int64(len(data)))
	}
	return nil
}

// giveBack opens the windows again for n consumed bytes: the connection's
// always, st's too while its body is still coming.
func (c *h2conn) giveBack(st *h2stream, n int64) { c.giveBackSplit(st, n, n) }

// giveBackSplit opens st's window again for streamN consumed bytes and the
// connection's for connN. They differ for a WebSocket stream (h2ws.go),
// whose bytes open the connection's window as they arrive and the
// stream's as the session reads them.
func (c *h2conn) giveBackSplit(st *h2stream, streamN, connN int64) {
	connN = c.connUnack.Add(connN)
	n := streamN
	streamN = 0
	if st != nil && n > 0 && st.unacked.Add(n) >= h2WindowRefill {
		streamN = st.unacked.Swap(0)
	}
	if connN < h2WindowRefill && streamN == 0 {
		return
	}
	if connN >= h2WindowRefill {
		connN = c.connUnack.Swap(0)
	} else {
		connN = 0
	}
	// Count the window open before saying so: the client may use it at
	// once.
	if connN > 0 {
		c.connRecv.Add(connN)
	}
	if streamN > 0 {
		st.recvWin.Add(streamN)
	}
	c.write(func() error {
		if connN > 0 {
			c.fr.WriteWindowUpdate(0, uint32(connN))
		}
		if streamN > 0 && !st.remoteEnd.Load() {
			c.fr.WriteWindowUpdate(st.id, uint32(streamN))
		}
		return nil
	}, true)
}

// h2body is a request body arriving in DATA frames.
type h2body struct{ st *h2stream }

func (b *h2body) Read(p []byte) (int, error) {
	st := b.st
	n, err := st.readData(p)
	if n > 0 {
		st.c.giveBack(st, int64(n))
	}
	if err == io.EOF {
		// The trailers go into the request on the handler's goroutine,
		// the only one that touches its map.
		st.bmu.Lock()
		for k, vv := range st.trailerVals {
			st.req.Trailer[k] = vv
		}
		st.trailerVals = nil
		st.bmu.Unlock()
	}
	return n, err
}

// readData takes what the client sent on st (DATA payload), waiting for
// it; the caller opens the windows again for what it took. Once all was
// read it returns the stream's end: io.EOF, or why the stream failed.
func (st *h2stream) readData(p []byte) (int, error) {
	st.bmu.Lock()
	defer st.bmu.Unlock()
	for len(st.buf) == 0 && st.bodyErr == nil {
		st.bcond.Wait()
	}
	if len(st.buf) > 0 && len(p) > 0 {
		n := copy(p, st.buf)
		st.buf = st.buf[n:]
		if len(st.buf) == 0 {
			st.buf = nil
		}
		return n, nil
	}
	return 0, st.bodyErr
}

func (b *h2body) Close() error { return nil }

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
