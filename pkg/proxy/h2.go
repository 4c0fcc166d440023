package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
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
	h2Preface       = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2MaxStreams    = 250
	h2StreamWindow  = 1 << 20
	h2ConnWindow    = 1 << 20
	h2MaxReadFrame  = 1 << 20
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1
	h2WindowRefill  = 32 << 10 // consumed bytes worth a WINDOW_UPDATE
)

var errStreamClosed = errors.New("http2: stream closed")

// h2conn is one client HTTP/2 connection.
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
	smu         sync.Mutex
	streams     map[uint32]*h2stream
	maxID       uint32 // highest client stream id seen
	goAway      bool   // GOAWAY sent: no new streams
	handlers    sync.WaitGroup
	active      atomic.Int32
	connRecv    atomic.Int64 // what the peer may still send on the connection
	connUnack   atomic.Int64 // consumed, not yet given back with WINDOW_UPDATE
	dlArmed     atomic.Bool  // an idle read deadline is set
	goAwayAsked atomic.Bool  // a graceful stop asked for GOAWAY
}

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

	sendWin int64 // under c.fmu

	// Request body, filled by the reader goroutine.
	bmu         sync.Mutex
	bcond       sync.Cond
	buf         []byte
	bodyErr     error           // io.EOF once END_STREAM came, or why the body ended
	trailerKeys map[string]bool // announced trailer fields (set before the handler starts)
	trailerVals http.Header     // received trailer values, until the reader hands them over
	deadline    *time.Timer     // body read deadline (handler goroutine only)
	recvWin     atomic.Int64    // what the peer may still send on the stream
	declared    int64           // content-length, -1 unknown
	received    int64           // reader goroutine only
	unacked     atomic.Int64    // consumed, not yet given back with WINDOW_UPDATE
	remoteEnd   atomic.Bool     // END_STREAM received
	reset       atomic.Bool
	done        atomic.Bool // the handler finished
}

// serveH2 runs an HTTP/2 connection whose preface is at the start of br.
func (hc *h1conn) serveH2() {
	hc.br.Discard(len(h2Preface))
	c := &h2conn{p: hc.p, c: hc.c, hc: hc, remote: hc.remote, streams: map[uint32]*h2stream{},
		connSendWin: h2DefaultWindow, initSendWin: h2DefaultWindow, peerMaxFrame: 16384}
	c.connRecv.Store(h2ConnWindow)
	c.tls = hc.tlsState
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
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxReadFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(hc.p.cfg.MaxHeaderBytes)},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-h2DefaultWindow)
	c.werr = c.bw.Flush()
	c.wmu.Unlock()
	c.kick = make(chan struct{}, 1)
	c.flushWG.Add(1)
	go c.flusher()

	err := c.readLoop()
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.p.m.badInput.WithLabelValues("h2_protocol").Inc()
		c.goAwayNow(http2.ErrCode(ce))
	}
	c.closeAll()
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
			st.abort(fmt.Errorf("client reset the stream (%v)", f.ErrCode))
		}
		return nil
	case *http2.GoAwayFrame:
		c.smu.Lock()
		c.goAway = true
		c.smu.Unlock()
		if c.active.Load() == 0 {
			return io.EOF
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // PRIORITY, unknown frame types: nothing to do
}

func (c *h2conn) onSettings(f *http2.SettingsFrame) error {
	return f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.fmu.Lock()
			delta := int64(s.Val) - c.initSendWin
			c.initSendWin = int64(s.Val)
			c.smu.Lock()
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > h2MaxWindow {
					c.smu.Unlock()
					c.fmu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.smu.Unlock()
			c.fcond.Broadcast()
			c.fmu.Unlock()
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

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if f.StreamID == 0 {
		c.connSendWin += int64(f.Increment)
		if c.connSendWin > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.fcond.Broadcast()
		return nil
	}
	st, idle := c.lookup(f.StreamID)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st == nil {
		return nil
	}
	st.sendWin += int64(f.Increment)
	if st.sendWin > h2MaxWindow {
		go c.resetStream(st.id, http2.ErrCodeFlowControl)
		return nil
	}
	c.fcond.Broadcast()
	return nil
}

// lookup returns the open stream id, if any, and whether id is idle (never
// opened: frames other than HEADERS on it are a protocol error).
func (c *h2conn) lookup(id uint32) (st *h2stream, idle bool) {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.streams[id], id > c.maxID
}

// onBlockFragment decodes a piece of the header block being read; the
// last one acts on the whole block. Like x/net's Framer, it ends the
// connection when a piece is more than four times the room left under the
// size limit (so a block over the limit by a little still gets its 431),
// or keeps coming after the block went over the limit or held an invalid
// field: decoding what will be thrown away is work a peer could make us
// do without end.
func (c *h2conn) onBlockFragment(frag []byte, ended bool) error {
	b := &c.blk
	if err := b.decode(c.hdec, frag, ended); err != nil || !ended {
		return err
	}
	defer func() { b.id = 0 }() // no block open until the next HEADERS
	if b.invalid != nil {
		// A malformed request (RFC 9113 section 8.1.1): its stream is reset,
		// and counts as opened (and closed) so that its late frames are
		// not taken for a protocol error.
		c.p.m.badInput.WithLabelValues("malformed").Inc()
		c.smu.Lock()
		if b.id%2 == 1 && b.id > c.maxID {
			c.maxID = b.id
		}
		c.smu.Unlock()
		c.resetStream(b.id, http2.ErrCodeProtocol)
		return nil
	}
	return c.onHeaders(b)
}

// h2block is the header block being read (RFC 9113 section 4.3), its
// fields as HPACK decodes them. The read loop reuses it for every block:
// newRequest copies out what it keeps.
type h2block struct {
	id        uint32
	endStream bool
	fields    []hpack.HeaderField
	max       uint32 // MaxHeaderBytes, counted as HPACK does (RFC 7541 section 4.1)
	size      uint32
	truncated bool  // over max: the fields are dropped, the request gets 431
	invalid   error // a field no request may carry: the stream is reset
	regular   bool  // a regular field was seen (pseudo-headers come first)
}

// decode takes one fragment of the block through dec (whose emit function
// is b.emit), ended when it is the last; the error is the connection
// error to answer with.
func (b *h2block) decode(dec *hpack.Decoder, frag []byte, ended bool) error {
	if b.id == 0 || int64(len(frag)) > 4*int64(b.max-b.size) || (b.invalid != nil && !ended) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if _, err := dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if ended {
		if err := dec.Close(); err != nil {
			return http2.ConnectionError(http2.ErrCodeCompression)
		}
	}
	return nil
}

func (b *h2block) start(id uint32, endStream bool) {
	clear(b.fields)
	*b = h2block{id: id, endStream: endStream, fields: b.fields[:0], max: b.max}
}

// emit takes one decoded field. Fields after the block went bad are
// decoded (the dynamic table must stay in step) and dropped.
func (b *h2block) emit(hf hpack.HeaderField) {
	if b.truncated || b.invalid != nil {
		return
	}
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = errors.New("invalid value for field " + strconv.Quote(hf.Name))
		return
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.regular {
			b.invalid = errors.New("pseudo-header after a regular field")
			return
		}
	} else {
		b.regular = true
		if !validWireName(hf.Name) {
			b.invalid = errors.New("invalid field name " + strconv.Quote(hf.Name))
			return
		}
	}
	if size := hf.Size(); size > b.max-b.size {
		b.truncated = true
		b.size = b.max
		clear(b.fields)
		b.fields = b.fields[:0]
		return
	} else {
		b.size += size
	}
	b.fields = append(b.fields, hf)
}

// onHeaders starts a stream, or takes a request's trailers.
func (c *h2conn) onHeaders(f *h2block) error {
	id := f.id
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.smu.Lock()
	if st := c.streams[id]; st != nil {
		c.smu.Unlock()
		// Trailers: they end the body.
		if st.remoteEnd.Load() || !f.endStream {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if len(f.fields) > 0 && strings.HasPrefix(f.fields[0].Name, ":") {
			// Pseudo-headers come first, and none may be in trailers: a
			// malformed request (RFC 9113 section 8.1).
			c.p.m.badInput.WithLabelValues("malformed").Inc()
			c.resetStream(id, http2.ErrCodeProtocol)
			return nil
		}
		st.trailers(f)
		return nil
	}
	if id <= c.maxID {
		c.smu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	c.maxID = id
	if c.goAway {
		c.smu.Unlock()
		return nil // after GOAWAY new streams are ignored (RFC 9113 section 6.8)
	}
	if len(c.streams) >= h2MaxStreams {
		c.smu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	st := &h2stream{c: c, id: id, declared: -1}
	st.recvWin.Store(h2StreamWindow)
	st.bcond.L = &st.bmu
	c.fmu.Lock()
	st.sendWin = c.initSendWin
	c.fmu.Unlock()
	c.streams[id] = st
	c.active.Add(1)
	c.smu.Unlock()

	if f.truncated {
		// Larger than MaxHeaderBytes: 431, as for HTTP/1.1.
		st.remoteEnd.Store(f.endStream)
		st.bodyErr = io.EOF
		c.handlers.Add(1)
		go st.refuse(http.StatusRequestHeaderFieldsTooLarge)
		return nil
	}
	req, err := c.newRequest(st, f)
	if err != nil {
		c.p.m.badInput.WithLabelValues("malformed").Inc()
		c.finishStream(st)
		c.resetStream(id, http2.ErrCodeProtocol)
		return nil
	}
	st.req = req
	st.w = h2writer{st: st, length: -1}
	c.handlers.Add(1)
	go st.run()
	return nil
}

// newRequest builds the request of a HEADERS frame (RFC 9113 section 8.3).
func (c *h2conn) newRequest(st *h2stream, f *h2block) (*http.Request, error) {
	var method, path, scheme, authority string
	var seen uint8
	npseudo := 0
	for _, hf := range f.fields {
		var bit uint8
		switch hf.Name {
		case ":method":
			method, bit = hf.Value, 1
		case ":path":
			path, bit = hf.Value, 2
		case ":scheme":
			scheme, bit = hf.Value, 4
		case ":authority":
			authority, bit = hf.Value, 8
		default:
			if strings.HasPrefix(hf.Name, ":") {
				return nil, errors.New("unsupported pseudo-header " + hf.Name)
			}
		}
		if bit == 0 {
			break // the regular fields start here
		}
		if seen&bit != 0 {
			return nil, errors.New("duplicate pseudo-header " + hf.Name)
		}
		seen |= bit
		npseudo++
	}
	if method == "" || !validToken([]byte(method)) || method == http.MethodConnect || scheme == "" || path == "" ||
		(path[0] != '/' && !(path == "*" && method == http.MethodOptions)) {
		return nil, errors.New("malformed pseudo-headers")
	}
	regular := f.fields[npseudo:]
	h := make(http.Header, len(regular))
	vals := make([]string, len(regular))
	length := int64(-1)
	for i, hf := range regular {
		if !validWireName(hf.Name) {
			return nil, errors.New("invalid field name")
		}
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, errors.New("connection-specific field " + hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
		case "host":
			if authority == "" {
				authority = hf.Value
			}
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || (length >= 0 && int64(n) != length) {
				return nil, errors.New("bad content-length")
			}
			length = int64(n)
		}
		k := canonicalH2(hf.Name)
		vals[i] = hf.Value
		if prior, ok := h[k]; ok {
			h[k] = append(prior, hf.Value)
		} else {
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if authority != "" && !httpguts.ValidHostHeader(authority) {
		return nil, errors.New("bad authority")
	}
	delete(h, "Host")
	u := &url.URL{}
	if path == "*" {
		u.Path = "*"
	} else {
		pathPart, query, _ := strings.Cut(path, "?")
		plain := true
		for i := 0; i < len(pathPart); i++ {
			if b := pathPart[i]; !plainPathByte[b] {
				plain = false
				break
			}
		}
		for i := 0; i < len(path); i++ {
			if b := path[i]; b <= ' ' || b >= 0x7f {
				return nil, errors.New("bad path")
			}
		}
		if plain {
			u.Path, u.RawQuery = pathPart, query
		} else {
			pu, err := url.ParseRequestURI(path)
			if err != nil {
				return nil, err
			}
			u = pu
		}
	}
	st.url = *u
	r := (&http.Request{
		Method:     method,
		URL:        &st.url,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       authority,
		RemoteAddr: c.remote,
		RequestURI: path,
		TLS:        c.tls,
	}).WithContext(st)
	if f.endStream {
		st.remoteEnd.Store(true)
		st.bodyErr = io.EOF
		r.Body = http.NoBody
		r.ContentLength = 0
		if length > 0 {
			return nil, errors.New("content-length without a body")
		}
	} else {
		st.declared = length
		r.ContentLength = length
		for _, v := range h["Trailer"] {
			for k := range strings.SplitSeq(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
					if r.Trailer == nil {
						r.Trailer = http.Header{}
						st.trailerKeys = map[string]bool{}
					}
					r.Trailer[k] = nil
					st.trailerKeys[k] = true
				}
			}
		}
		st.body.st = st
		r.Body = &st.body
	}
	return r, nil
}

// validWireName reports whether name is a field name as HTTP/2 carries
// it: a token in lower case (RFC 9113 section 8.2.1). The Framer checks
// this too; the request builder does not rely on it.
func validWireName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// onData takes a DATA frame into its stream's body.
func (c *h2conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	if c.connRecv.Add(-n) < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st, idle := c.lookup(f.StreamID)
	if idle {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st == nil || st.remoteEnd.Load() || st.done.Load() || st.reset.Load() {
		// Nobody will read it: the connection's window opens again at
		// once.
		c.giveBack(nil, n)
		if st != nil && st.remoteEnd.Load() && !st.reset.Load() {
			// DATA after END_STREAM (RFC 9113 section 5.1).
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		// A closed stream's DATA is the client's, sent before it saw our
		// RST_STREAM or end of stream: ignored (section 5.4.2), not
		// answered with another reset each time.
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
	st.bcond.Broadcast()
	st.bmu.Unlock()
	return nil
}

// trailers ends a request body with its trailer fields. Only fields the
// request announced in its Trailer header are kept (as net/http does):
// their keys are in Request.Trailer from the start; the body reader puts
// the values there when it reports the end of the body (on the handler's
// goroutine, the only one that touches the map).
func (st *h2stream) trailers(f *h2block) {
	st.remoteEnd.Store(true)
	st.bmu.Lock()
	if st.trailerKeys != nil {
		for _, hf := range f.fields {
			k := canonicalH2(hf.Name)
			if st.trailerKeys[k] && httpguts.ValidTrailerHeader(k) {
				if st.trailerVals == nil {
					st.trailerVals = http.Header{}
				}
				st.trailerVals[k] = append(st.trailerVals[k], hf.Value)
			}
		}
	}
	if st.bodyErr == nil {
		st.bodyErr = io.EOF
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
}

// giveBack opens the windows again for n consumed bytes: the connection's
// always, st's too while its body is still coming.
func (c *h2conn) giveBack(st *h2stream, n int64) {
	connN := c.connUnack.Add(n)
	var streamN int64
	if st != nil && st.unacked.Add(n) >= h2WindowRefill {
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

// resetStream sends RST_STREAM for id and forgets the stream.
func (c *h2conn) resetStream(id uint32, code http2.ErrCode) {
	c.write(func() error { return c.fr.WriteRSTStream(id, code) }, true)
	c.smu.Lock()
	st := c.streams[id]
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
// event loop would send them.
func (c *h2conn) flusher() {
	defer c.flushWG.Done()
	for {
		select {
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		runtime.Gosched()
		c.flushNow()
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

// goAwayNow tells the client no new streams will be taken.
func (c *h2conn) goAwayNow(code http2.ErrCode) {
	c.smu.Lock()
	if c.goAway && code == http2.ErrCodeNo {
		c.smu.Unlock()
		return
	}
	c.goAway = true
	last := c.maxID
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
	goAway := c.goAway
	c.smu.Unlock()
	if left == 0 {
		if goAway || c.p.stopping.Load() {
			// Done after GOAWAY: end the connection (the reader's next
			// read fails).
			c.goAwayNow(http2.ErrCodeNo)
			c.c.SetReadDeadline(aLongTimeAgo)
			return
		}
		c.dlArmed.Store(true)
		c.c.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
	}
}
