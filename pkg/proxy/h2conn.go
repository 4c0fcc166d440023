package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 fast path (h2c with prior knowledge, or h2 chosen by ALPN
// over TLS; RFC 9113).
//
// net/http's HTTP/2 server passes every frame a handler writes through its
// serve goroutine over channels, and costs about three times what a whole
// HAProxy hop does per request. h2conn keeps the x/net Framer (frame
// parsing and checks, HPACK) and does the rest itself: one reader
// goroutine per connection, one goroutine per stream running the proxy,
// frames written straight to a shared buffer under a lock, and one flush
// for however many responses finish together (a finishing stream skips
// the flush when another is waiting to write: the last one flushes).
//
// Flow control: the peer's windows (connection and stream) bound what is
// sent; before a stream waits for window it flushes, so the peer can see
// the data it is to acknowledge. Request bodies are bounded by the windows
// we advertise (h2StreamWindow per stream, h2ConnWindow per connection),
// which are opened again as the proxy reads the body.

const (
	h2Preface      = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2MaxStreams   = 250
	h2StreamWindow = 1 << 20
	h2ConnWindow   = 1 << 20
	// The largest frame taken is the protocol's default, not advertised:
	// a client must not send more before it has seen our SETTINGS
	// (RFC 9113 section 4.2), and h2spec checks that a larger one is a
	// FRAME_SIZE_ERROR. HAProxy and nginx read 16 KiB frames too.
	h2MaxReadFrame  = 16384
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	h2WindowRefill  = 32 << 10 // consumed bytes worth a WINDOW_UPDATE
	h2ResetMemory   = 64       // streams we reset whose late frames are ignored
)

var (
	errStreamClosed = errors.New("http2: stream closed")
	errPeerGoAway   = errors.New("http2: the client sent GOAWAY")
)

// h2conn is one client HTTP/2 connection.
//
// Its goroutines: the read loop (serveH2's, which runs until the
// connection ends and then waits for the others in closeAll), one per
// stream (run or refuse, counted in handlers) and the flusher (flushWG).
// Nothing else starts one: a reset or GOAWAY is written by whoever decides
// it (the read loop, a stream), or by the flusher when a graceful stop asks
// (goAwayAsked).
//
// Lock order: smu before fmu. A stream's cmu and bmu come after either
// (closeAll aborts the streams under smu; abort takes cmu, bmu and fmu one
// at a time). wmu is taken with none of smu, fmu, cmu or bmu held, and none
// of them is taken under it: the frame-writing functions passed to write
// touch only what wmu guards and atomics.
type h2conn struct {
	p      *Proxy
	c      net.Conn
	hc     *h1conn // the fast-path connection it grew from (state, shutdown)
	remote string
	tls    *tls.ConnectionState // nil for h2c
	fr     *http2.Framer

	// Reading header blocks (read loop only): the HPACK decoder and the
	// block being decoded, reused for every block.
	hdec *hpack.Decoder
	blk  h2block

	ctx    context.Context
	cancel context.CancelFunc

	// Writing: everything below wmu is used under it.
	wmu     sync.Mutex
	bw      *bufio.Writer
	hpe     *hpackEncoder
	hbuf    []byte // header block being encoded
	werr    error
	waiting atomic.Int32  // writers waiting for wmu: the last one asks for the flush
	kick    chan struct{} // wakes the flusher
	flushWG sync.WaitGroup

	// Sending flow control, under fmu; fcond wakes streams waiting for
	// window.
	fmu          sync.Mutex
	fcond        *sync.Cond
	connSendWin  int64
	initSendWin  int64
	peerMaxFrame int
	closedSend   bool // the connection is done: nobody waits for window

	// Streams, under smu.
	smu        sync.Mutex
	streams    map[uint32]*h2stream
	maxID      uint32 // highest client stream id seen
	goAway     bool   // GOAWAY sent: no new streams
	goAwayLast uint32 // the last stream id the GOAWAY said was taken
	// The streams we reset while the client may still be sending on them
	// (its frames in flight are ignored, RFC 9113 section 5.4.2), the
	// latest h2ResetMemory of them; a frame on any other closed stream
	// is answered as one (STREAM_CLOSED).
	resetIDs    [h2ResetMemory]uint32
	resetNext   int
	handlers    sync.WaitGroup
	active      atomic.Int32
	connRecv    atomic.Int64 // what the peer may still send on the connection
	connUnack   atomic.Int64 // consumed, not yet given back with WINDOW_UPDATE
	dlArmed     atomic.Bool  // an idle read deadline is set
	goAwayAsked atomic.Bool  // a graceful stop asked for GOAWAY
}

// serveH2 runs an HTTP/2 connection whose preface is at the start of br.
func (hc *h1conn) serveH2() {
	hc.br.Discard(len(h2Preface))
	c := &h2conn{p: hc.p, c: hc.c, hc: hc, remote: hc.remote, streams: map[uint32]*h2stream{},
		connSendWin: h2DefaultWindow, initSendWin: h2DefaultWindow, peerMaxFrame: 16384,
		kick: make(chan struct{}, 1)} // before hc.h2 shows c to closeIdle
	c.connRecv.Store(h2ConnWindow)
	c.tls = hc.tlsState
	if c.tls == nil {
		hc.ent.proto.Store(protoH2C)
	} else {
		hc.ent.proto.Store(protoH2)
	}
	hc.setIdle(time.Now()) // until the first stream
	c.ctx, c.cancel = context.WithCancel(hc.ctx)
	defer c.cancel()
	hc.h2.Store(c)
	c.fcond = sync.NewCond(&c.fmu)
	c.bw = bufio.NewWriterSize(hc.c, 16<<10)
	c.fr = http2.NewFramer(c.bw, hc.br)
	c.fr.SetMaxReadFrameSize(h2MaxReadFrame)
	c.fr.MaxHeaderListSize = uint32(hc.p.cfg.MaxHeaderBytes)
	c.hdec = hpack.NewDecoder(4096, c.blk.emit)
	c.hdec.SetMaxStringLength(hc.p.cfg.MaxHeaderBytes)
	c.blk.max = uint32(hc.p.cfg.MaxHeaderBytes)
	c.hpe = newHpackEncoder()

	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(hc.p.cfg.MaxHeaderBytes)},
		// WebSockets over HTTP/2 (RFC 8441): served here (h2ws.go).
		http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-h2DefaultWindow)
	c.werr = c.bw.Flush()
	c.wmu.Unlock()
	c.flushWG.Add(1)
	go c.flusher()

	err := c.readLoop()
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.p.m.badInput.WithLabelValues("h2_protocol").Inc()
		c.goAwayNow(http2.ErrCode(ce))
	}
	c.closeAll()
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		// The client may still be sending: closing now would reset the
		// connection, and a reset can destroy the GOAWAY before the client
		// reads it. So the write side ends first, and what comes is read
		// and dropped for a short while (as after a refused upload).
		hc.lingerClose()
	}
}

// readLoop reads and acts on frames until the connection ends.
func (c *h2conn) readLoop() error {
	first := true
	c.c.SetReadDeadline(time.Now().Add(c.p.cfg.ReadHeaderTimeout))
	for {
		if !first {
			c.idleDeadline()
		}
		fh, err := c.fr.ReadFrameHeader()
		var f http2.Frame
		if err == nil {
			f, err = c.fr.ReadFrameForHeader(fh)
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.p.m.badInput.WithLabelValues("h2_protocol").Inc()
				if fh.Type == http2.FrameHeaders || fh.Type == http2.FrameData {
					// The Framer's stream errors for these are padding as long
					// as the payload, a connection error (RFC 9113 sections 6.1
					// and 6.2): going on would leave the HPACK decoder or the
					// connection's window out of step with the client.
					return http2.ConnectionError(http2.ErrCodeProtocol)
				}
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			if errors.Is(err, http2.ErrFrameTooLarge) {
				return http2.ConnectionError(http2.ErrCodeFrameSize)
			}
			return err
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			first = false
		}
		if err := c.handleFrame(f); err != nil {
			return err
		}
	}
}

// idleDeadline bounds the wait for the next frame: IdleTimeout while no
// stream is open, none while one is (streams have their own bounds).
func (c *h2conn) idleDeadline() {
	if c.active.Load() == 0 {
		if c.p.stopping.Load() {
			c.goAwayNow(http2.ErrCodeNo)
		}
		if !c.dlArmed.Swap(true) {
			c.c.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
		}
		return
	}
	if c.dlArmed.Swap(false) {
		c.c.SetReadDeadline(time.Time{})
	}
}

func (c *h2conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		c.blk.start(f.StreamID, f.StreamEnded())
		// A stream cannot depend on itself: a stream error, once the
		// block is decoded (RFC 7540 section 5.3.1; h2spec checks it).
		c.blk.selfDep = f.HasPriority() && f.Priority.StreamDep == f.StreamID
		return c.onBlockFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.ContinuationFrame:
		// The Framer lets a CONTINUATION through only right after the
		// HEADERS or CONTINUATION of the same stream that did not end the
		// block.
		return c.onBlockFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := c.onSettings(f); err != nil {
			return err
		}
		return c.write(func() error { return c.fr.WriteSettingsAck() }, true)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return c.write(func() error { return c.fr.WritePing(true, f.Data) }, true)
	case *http2.RSTStreamFrame:
		st, idle := c.lookup(f.StreamID)
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if st != nil {
			// Closed by the client: what it sends on the stream from now
			// on is a stream error (RFC 9113 section 5.1), while the
			// handler, until it notices, still counts against
			// h2MaxStreams.
			st.peerReset.Store(true)
			st.abort(fmt.Errorf("client reset the stream (%v)", f.ErrCode))
		}
		return nil
	case *http2.GoAwayFrame:
		// The client opens no more streams: say that we take none either,
		// and end the connection once the open ones are answered.
		c.goAwayNow(http2.ErrCodeNo)
		if c.active.Load() == 0 {
			return errPeerGoAway
		}
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.p.m.badInput.WithLabelValues("h2_protocol").Inc()
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types: nothing to do
}

func (c *h2conn) onSettings(f *http2.SettingsFrame) error {
	return f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.smu.Lock()
			c.fmu.Lock()
			delta := int64(s.Val) - c.initSendWin
			c.initSendWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > h2MaxWindow {
					c.fmu.Unlock()
					c.smu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.fcond.Broadcast()
			c.fmu.Unlock()
			c.smu.Unlock()
		case http2.SettingMaxFrameSize:
			c.fmu.Lock()
			c.peerMaxFrame = int(s.Val)
			c.fmu.Unlock()
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.hpe.setMaxSize(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
}

// lookup returns the open stream id, if any, and whether id is idle (never
// opened: frames other than HEADERS on it are a protocol error).
func (c *h2conn) lookup(id uint32) (st *h2stream, idle bool) {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.streams[id], id > c.maxID
}

// noteResetLocked remembers that we reset stream id (c.smu held): the
// client's frames for it sent before it saw the reset are ignored.
func (c *h2conn) noteResetLocked(id uint32) {
	c.resetIDs[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % h2ResetMemory
}

// lateFrameLocked reports whether a frame on the closed stream id is one
// to ignore (c.smu held): we reset the stream (recently), or it came after
// our GOAWAY, which did not take it (RFC 9113 sections 5.4.2 and 6.8).
// Other closed streams' DATA is answered with STREAM_CLOSED (section 6.1).
func (c *h2conn) lateFrameLocked(id uint32) bool {
	if c.goAway && id > c.goAwayLast {
		return true
	}
	for _, r := range c.resetIDs {
		if r == id {
			return true
		}
	}
	return false
}

// goAwayNow tells the client no new streams will be taken. A later GOAWAY
// (an error after a graceful one) names the same last stream.
func (c *h2conn) goAwayNow(code http2.ErrCode) {
	c.smu.Lock()
	if c.goAway && code == http2.ErrCodeNo {
		c.smu.Unlock()
		return
	}
	if !c.goAway {
		c.goAwayLast = c.maxID
	}
	c.goAway = true
	last := c.goAwayLast
	c.smu.Unlock()
	c.write(func() error { return c.fr.WriteGoAway(last, code, nil) }, true)
}

// closeAll ends the connection: open streams are cancelled, their
// handlers waited for.
func (c *h2conn) closeAll() {
	c.cancel()
	c.fmu.Lock()
	c.closedSend = true
	c.fcond.Broadcast()
	c.fmu.Unlock()
	c.smu.Lock()
	for _, st := range c.streams {
		st.abort(errStreamClosed)
	}
	c.smu.Unlock()
	c.handlers.Wait()
	c.flushWG.Wait()
	c.flushNow() // a last GOAWAY or reset
}

// finishStream forgets st.
func (c *h2conn) finishStream(st *h2stream) {
	c.smu.Lock()
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
		c.active.Add(-1)
	}
	left := c.active.Load()
	ending := c.goAway || c.p.stopping.Load()
	if left == 0 {
		// Under smu, as in onHeaders: the states follow the stream count.
		if ending {
			c.hc.state.Store(connClosing)
		} else {
			c.hc.state.Store(connIdle)
		}
	}
	c.smu.Unlock()
	if left == 0 {
		// since: when the connection was left without streams (a
		// graceful stop's closeIdle lets it settle first).
		now := time.Now()
		c.hc.since.Store(now.UnixNano())
		if ending {
			// Done after GOAWAY: end the connection (the reader's next
			// read fails).
			c.goAwayNow(http2.ErrCodeNo)
			c.c.SetReadDeadline(aLongTimeAgo)
			return
		}
		c.dlArmed.Store(true)
		c.c.SetReadDeadline(now.Add(c.p.cfg.IdleTimeout))
	}
}
