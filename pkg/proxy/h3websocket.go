package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// WebSocket over HTTP/3 (RFC 9220): quic-go's HTTP/3 server always
// advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, and an extended CONNECT
// arrives as Method CONNECT with r.Proto holding :protocol. The relay gets
// it exactly as an HTTP/1.1 upgrade (same Request fields, X-Forwarded-*,
// backends, moves), answered with 200 instead of 101; the request stream
// is the session's byte stream.
//
// Two things differ from HTTP/1.1 and are handled here:
//   - QUIC closes a connection nothing was received on for its idle
//     timeout (30 s unless the client asks for less). An idle WebSocket
//     must not die of that, so the server sends QUIC PINGs (h3KeepAlive);
//     see h3QUICConfig.
//   - The HTTP/3 server's graceful stop waits for open streams, then cuts
//     the connections. Sessions are tracked (wsSessions) so a stop ends
//     them with a WebSocket Close 1012 first, as HTTP/1.1 sessions get.

// h3KeepAlive is how long an HTTP/3 connection may go without a packet
// from the client before zd-queue sends a QUIC PING (quic-go sends it
// after at most half the idle timeout the two sides agreed on, so a client
// asking for 10 s gets one after 5 s).
const h3KeepAlive = 10 * time.Second

// h3FinishTimeout bounds the wait for a client to end its stream after its
// session ended (the relay's own close handshake is bounded by its
// CloseTimeout, 5 s).
const h3FinishTimeout = 5 * time.Second

// h3QUICConfig is the QUIC side of zd-queue's HTTP/3 server.
//
// Keep-alive is QUIC's own PING, on every HTTP/3 connection, rather than
// WebSocket pings from the relay: it costs one small packet per idle
// period and no WebSocket frame, needs nothing of the client's WebSocket
// code, and is needed only because QUIC (unlike TCP) has an idle timer.
// A connection without a request open is still closed by the HTTP/3
// idle timeout (Config.IdleTimeout), which counts requests, not packets;
// a client that vanished still times out, as its PINGs go unanswered.
func (p *Proxy) h3QUICConfig() *quic.Config {
	return &quic.Config{
		Allow0RTT:       true, // as quic-go's http3 default
		KeepAlivePeriod: h3KeepAlive,
		MaxIdleTimeout:  p.cfg.quicIdleTimeout, // 0: quic-go's 30 s
	}
}

// isH3ExtendedConnect reports whether r is an HTTP/3 extended CONNECT
// (RFC 9220: :protocol present), whatever the protocol.
func isH3ExtendedConnect(r *http.Request) bool {
	return r.ProtoMajor == 3 && r.Method == http.MethodConnect && r.Proto != "HTTP/3.0"
}

// serveH3WebSocket serves an HTTP/3 extended CONNECT. Bad requests get
// 501 (a :protocol other than websocket) or 426 (a Sec-WebSocket-Version
// other than 13, or none); quic-go itself resets the stream with H3_MESSAGE_ERROR
// when :path, :scheme or :authority is missing.
func (p *Proxy) serveH3WebSocket(w http.ResponseWriter, r *http.Request) string {
	if !strings.EqualFold(r.Proto, "websocket") {
		p.plainError(w, http.StatusNotImplemented, fmt.Sprintf("extended CONNECT for %q is not served: only websocket (RFC 9220)", r.Proto))
		return outcomeBadRequest
	}
	hs := h3Streamer(w)
	if hs == nil {
		p.plainError(w, http.StatusInternalServerError, "this HTTP/3 stream cannot be taken over")
		return outcomeBadRequest
	}
	s, outcome := p.openWebSocket(w, r, "h3")
	if s == nil {
		return outcome
	}
	w.WriteHeader(http.StatusOK)
	str, err := hs.HTTPStream() // sends the 200
	if err != nil {
		s.Abort()
		return outcomeClientGone
	}
	e := connEntryFrom(r.Context())
	if e != nil {
		e.h3stream(1, time.Now()) // the connection is active while the session is
	}
	st := &h3Stream{str: str}
	// The session runs on a goroutine of its own: the handler returns, so
	// quic-go frees the request's state.
	p.h3ws.add(s)
	go func() {
		defer p.h3ws.remove(s)
		s.Run(st, nil)
		st.finish(h3FinishTimeout)
		if e != nil {
			e.h3stream(-1, time.Time{})
		}
	}()
	return outcomeProxied
}

// h3Streamer finds quic-go's writer under the access log's.
func h3Streamer(w http.ResponseWriter) http3.HTTPStreamer {
	for {
		if hs, ok := w.(http3.HTTPStreamer); ok {
			return hs
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// h3Stream is an HTTP/3 request stream as the relay's client stream. It
// has no SetWriteDeadline on purpose: the relay then bounds a blocked
// write (WriteTimeout) by closing the stream, and Close ends it here. Reads
// and writes are the payload of DATA frames (http3.Stream does the
// framing). Close behaves as a net.Conn's: it also ends a blocked Read
// (with a deadline, since CancelRead would make the client's own Close
// fail: STOP_SENDING) and a blocked Write, and quic-go's rule that Close
// must not run concurrently with Write is kept with wmu.
type h3Stream struct {
	str    *http3.Stream
	wmu    sync.Mutex
	broken bool // a Write failed part-way: its DATA frame is cut, so the stream is reset, not finished
	fin    bool // the send side is closed
	closed atomic.Bool
}

var errH3StreamClosed = errors.New("HTTP/3 stream closed")

func (s *h3Stream) Read(b []byte) (int, error) { return s.str.Read(b) }

func (s *h3Stream) Write(b []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.fin || s.broken {
		return 0, errH3StreamClosed
	}
	n, err := s.str.Write(b)
	if err != nil {
		s.broken = true
	}
	return n, err
}

// CloseWrite ends the send side with a FIN after what was written: the
// relay half-closes after a Close for a client's protocol error.
func (s *h3Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.endWriteLocked()
}

func (s *h3Stream) endWriteLocked() error {
	if s.fin {
		return nil
	}
	s.fin = true
	if s.broken {
		s.str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		return nil
	}
	return s.str.Close()
}

func (s *h3Stream) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.str.SetReadDeadline(aLongTimeAgo)
	if !s.wmu.TryLock() {
		// A write is blocked (the client does not read): cut it.
		s.str.SetWriteDeadline(aLongTimeAgo)
		s.wmu.Lock()
	}
	defer s.wmu.Unlock()
	return s.endWriteLocked()
}

// finish waits (at most d) for the client's end of the stream after the
// session ended, so the stream closes both ways with a FIN (and quic-go
// stops tracking it); a client that does not end it gets STOP_SENDING.
func (s *h3Stream) finish(d time.Duration) {
	s.Close()
	s.str.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	for n := 0; n < 1<<20; {
		m, err := s.str.Read(buf[:])
		n += m
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			break
		}
	}
	s.str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
}
