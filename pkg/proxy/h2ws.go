package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// WebSockets over HTTP/2 (RFC 8441): an extended CONNECT (:method CONNECT,
// :protocol websocket, with :scheme, :path and :authority; h2headers.go
// checks the form) is answered 200 and its stream then carries the
// WebSocket's bytes, relayed by pkg/wsrelay exactly as an HTTP/1.1
// upgrade's connection is: the backend side stays an ordinary RFC 6455
// handshake, and the session moves between backends at message boundaries.
//
// The fast HTTP/2 server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL on
// every connection because it serves it here. net/http's HTTP/2 servers
// (the h2c Upgrade path through x/net, --fast-path=false, Config.NoFastH2)
// advertise it only when the process starts with GODEBUG=http2xconnect=1;
// then their extended CONNECTs are served here too (h2wsNetHTTP).

// h2wsGrace bounds the wait, after the session ended the stream, for the
// client to end its side, so the stream closes with END_STREAM both ways
// rather than our RST_STREAM(NO_ERROR); it also bounds a write stuck on a
// window the client never opens once the session wants the stream closed.
const h2wsGrace = time.Second

// serveExtendedConnect answers an HTTP/2 CONNECT that names a :protocol:
// websocket goes to the relay, anything else is 501.
func (p *Proxy) serveExtendedConnect(w http.ResponseWriter, r *http.Request) string {
	proto := r.Header[":protocol"][0]
	delete(r.Header, ":protocol")
	if proto != "websocket" {
		p.m.badInput.WithLabelValues("malformed").Inc()
		p.plainError(w, http.StatusNotImplemented, "extended CONNECT for protocol "+strconv.Quote(proto)+
			" is not served; only websocket (RFC 8441)")
		return outcomeBadRequest
	}
	return p.serveH2WebSocket(w, r)
}

// serveH2WebSocket opens a session for an RFC 8441 handshake (with the
// X-Forwarded-* fields an HTTP/1.1 one gets) and answers 200 with the backend's subprotocol
// and zd-queue's own extensions. On the fast path the session then runs
// on the stream's goroutine after serve returns (h2stream.run), so the
// handshake is what the request metrics and the access log count; on
// net/http's servers the handler lives as long as the session.
func (p *Proxy) serveH2WebSocket(w http.ResponseWriter, r *http.Request) string {
	s, outcome := p.openWebSocket(w, r, "h2")
	if s == nil {
		return outcome
	}
	w.WriteHeader(http.StatusOK)
	if hw := fastH2Writer(w); hw != nil {
		hw.st.ws = &h2ws{st: hw.st, s: s}
		return outcomeProxied
	}
	p.h2ws.add(s)
	defer p.h2ws.remove(s)
	h2wsNetHTTP(w, r, s)
	return outcomeProxied
}

// fastH2Writer returns the fast HTTP/2 server's writer under w (the
// access log wraps it), or nil when net/http serves the stream.
func fastH2Writer(w http.ResponseWriter) *h2writer {
	for {
		switch v := w.(type) {
		case *h2writer:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// h2ws is an RFC 8441 stream of the fast HTTP/2 server as the session's
// byte stream. Reads are the stream's DATA (each read opens the stream's
// window again: WINDOW_UPDATE as the session reads; the connection's
// window opens as the bytes arrive, so a stalled session holds at most its
// own window, 1 MiB, never the connection's); writes are DATA within the
// client's windows; Close (and CloseWrite) end our side with END_STREAM. A
// client's RST_STREAM fails reads and writes: the session's client is
// gone.
type h2ws struct {
	st *h2stream
	s  *wsrelay.Session

	wmu   sync.Mutex // one write at a time, and END_STREAM after the last
	ended bool       // under wmu: END_STREAM sent (or the stream is gone)
}

// run answers the handshake and relays the session until it ends; the
// stream's goroutine runs it.
func (t *h2ws) run() {
	st := t.st
	p := st.c.p
	// From now on its bytes open the connection's window as they arrive;
	// those already here do so now.
	st.bmu.Lock()
	st.tunnel = true
	early := int64(len(st.buf))
	st.bmu.Unlock()
	if early > 0 {
		st.c.giveBackSplit(nil, 0, early)
	}
	if st.w.start(false) == nil {
		st.c.requestFlush()
	}
	p.h2ws.add(t.s)
	t.s.Run(t, nil)
	p.h2ws.remove(t.s)
	t.Close() // done by Run already; this orders its writes before finish
	st.awaitPeerEnd(h2wsGrace)
}

// Read takes what the client sent, opening the stream's window again (the
// connection's was opened as the bytes arrived).
func (t *h2ws) Read(p []byte) (int, error) {
	n, err := t.st.readData(p)
	if n > 0 {
		t.st.c.giveBackSplit(t.st, int64(n), 0)
	}
	return n, err
}

func (t *h2ws) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.ended {
		return 0, errStreamClosed
	}
	n, err := t.st.w.sendData(p, false)
	if err == nil {
		err = t.st.c.requestFlush()
	}
	return n, err
}

// CloseWrite ends our side of the stream (END_STREAM); reads go on. A
// write blocked on a window the client does not open is given h2wsGrace,
// then the stream is reset (CANCEL).
func (t *h2ws) CloseWrite() error {
	if !t.wmu.TryLock() {
		st := t.st
		stuck := time.AfterFunc(h2wsGrace, func() { st.c.resetStream(st.id, http2.ErrCodeCancel) })
		t.wmu.Lock()
		stuck.Stop()
	}
	defer t.wmu.Unlock()
	if t.ended {
		return nil
	}
	t.ended = true
	w := &t.st.w
	w.ended = true
	_, err := w.sendData(nil, true)
	return err
}

// Close ends our side and fails the session's reads from now on (a
// reader blocked on the client returns).
func (t *h2ws) Close() error {
	err := t.CloseWrite()
	st := t.st
	st.bmu.Lock()
	if st.bodyErr == nil {
		st.bodyErr = errStreamClosed
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
	return err
}

// awaitPeerEnd waits, at most d, for the client to end its side of the
// stream (END_STREAM) or reset it.
func (st *h2stream) awaitPeerEnd(d time.Duration) {
	expired := false
	t := time.AfterFunc(d, func() {
		st.bmu.Lock()
		expired = true
		st.bcond.Broadcast()
		st.bmu.Unlock()
	})
	defer t.Stop()
	st.bmu.Lock()
	defer st.bmu.Unlock()
	for !st.remoteEnd.Load() && !st.reset.Load() && !expired {
		st.bcond.Wait()
	}
}

// isExtendedConnect reports whether r is an HTTP/2 CONNECT with a
// :protocol (where both HTTP/2 servers put it).
func isExtendedConnect(r *http.Request) bool {
	return r.ProtoMajor == 2 && len(r.Header[":protocol"]) > 0
}

// h2wsNetHTTP relays the session over a stream of net/http's HTTP/2
// server (x/net's on the h2c Upgrade path, or the bundled one), until it
// ends: the handler must not return before, as the stream ends with it.
func h2wsNetHTTP(w http.ResponseWriter, r *http.Request, s *wsrelay.Session) {
	t := &netH2ws{w: w, r: r, rc: http.NewResponseController(w)}
	if err := t.rc.Flush(); err != nil {
		t.rc.SetReadDeadline(aLongTimeAgo)
	}
	s.Run(t, nil)
	// Let the client end its side first (END_STREAM both ways), bounded.
	t.rc.SetReadDeadline(time.Now().Add(h2wsGrace))
	var buf [512]byte
	for {
		if _, err := r.Body.Read(buf[:]); err != nil {
			return
		}
	}
}

// netH2ws is a net/http HTTP/2 stream as the session's byte stream; Close
// makes blocked reads return (the END_STREAM goes when the handler does).
type netH2ws struct {
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController
	wmu  sync.Mutex
	once sync.Once
	done bool // under wmu
}

func (t *netH2ws) Read(p []byte) (int, error) { return t.r.Body.Read(p) }

func (t *netH2ws) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.done {
		return 0, errStreamClosed
	}
	n, err := t.w.Write(p)
	if err == nil {
		err = t.rc.Flush()
	}
	return n, err
}

func (t *netH2ws) Close() error {
	t.once.Do(func() {
		t.rc.SetReadDeadline(aLongTimeAgo)
		if !t.wmu.TryLock() {
			// A write is stuck on the client's window: cut it.
			t.rc.SetWriteDeadline(time.Now().Add(h2wsGrace))
			t.wmu.Lock()
		}
		t.done = true
		t.wmu.Unlock()
	})
	return nil
}
