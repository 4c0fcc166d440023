// Package h3wsclient dials WebSocket over HTTP/3 (RFC 9220) for zd's
// tests and tools: quic-go's HTTP/3 client sends the extended CONNECT, and
// coder/websocket (independent of zd-queue's relay) speaks RFC 6455 on the
// request stream.
//
// coder/websocket only knows HTTP/1.1 handshakes, so Dial gives it an
// http.Client whose RoundTrip does the HTTP/3 exchange and turns the
// server's 200 into the 101 the library checks (Sec-WebSocket-Accept made
// from its own key, the subprotocol and extensions the server chose), with
// the request stream as the 101's body.
package h3wsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/zdtools/zd/internal/wsconnect"
)

// Options tune Dial.
type Options struct {
	TLS  *tls.Config  // RootCAs and the like; NextProtos is set to h3
	QUIC *quic.Config // nil: quic-go's defaults (30 s idle timeout, no keep-alive)
	// WS is handed to websocket.Dial (subprotocols, compression, header
	// fields); its HTTPClient is replaced.
	WS *websocket.DialOptions
}

// StatusError is a server's answer other than 200 to the extended CONNECT.
type StatusError = wsconnect.StatusError

// Conn is a WebSocket over its own QUIC connection.
type Conn struct {
	*websocket.Conn
	QUIC *quic.Conn
	// Response is the server's HTTP/3 answer (200, its fields).
	Response *http.Response
}

// CloseQUIC ends the QUIC connection (after the WebSocket's own close).
func (c *Conn) CloseQUIC() error { return c.QUIC.CloseWithError(0, "") }

// Dial opens a QUIC connection to addr (host:port), waits for the
// server's SETTINGS, checks it allows extended CONNECT and opens a
// WebSocket to path ("/ws?x=1") over one request stream. Errors: the dial's,
// "server does not allow extended CONNECT", a *StatusError (wrapped), or
// the WebSocket handshake's.
func Dial(ctx context.Context, addr, path string, o Options) (*Conn, error) {
	tc := &tls.Config{}
	if o.TLS != nil {
		tc = o.TLS.Clone()
	}
	tc.NextProtos = []string{http3.NextProtoH3}
	qc, err := quic.DialAddr(ctx, addr, tc, o.QUIC)
	if err != nil {
		return nil, fmt.Errorf("dial QUIC %s: %w", addr, err)
	}
	c, err := DialOn(ctx, NewClientConn(qc), addr, path, o)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	return c, nil
}

// NewClientConn starts HTTP/3 on a QUIC connection, for DialOn.
func NewClientConn(qc *quic.Conn) *ClientConn {
	return &ClientConn{qc: qc, cc: (&http3.Transport{}).NewClientConn(qc)}
}

// ClientConn is an HTTP/3 connection several WebSockets can share, each
// on a request stream of its own (as many as the server's stream limit
// allows open at once: quic-go's default is 100).
type ClientConn struct {
	qc *quic.Conn
	cc *http3.ClientConn
}

// HTTP3 is the connection's quic-go HTTP/3 client, for other requests on
// it (a second one on the same QUIC connection would break HTTP/3: one
// control stream per side).
func (c *ClientConn) HTTP3() *http3.ClientConn { return c.cc }

// DialOn opens a WebSocket to path over a new request stream of cc; addr
// is the authority asked for. o.TLS and o.QUIC are not used.
func DialOn(ctx context.Context, cc *ClientConn, addr, path string, o Options) (*Conn, error) {
	rt := &roundTripper{cc: cc.cc}
	ws := websocket.DialOptions{}
	if o.WS != nil {
		ws = *o.WS
	}
	ws.HTTPClient = &http.Client{Transport: rt}
	c, _, err := websocket.Dial(ctx, "https://"+addr+path, &ws)
	if err != nil {
		if rt.refused != nil {
			return nil, rt.refused
		}
		return nil, err
	}
	return &Conn{Conn: c, QUIC: cc.qc, Response: rt.resp}, nil
}

type roundTripper struct {
	cc      *http3.ClientConn
	resp    *http.Response
	refused error
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	select {
	case <-t.cc.ReceivedSettings():
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the server's SETTINGS: %w", ctx.Err())
	}
	if !t.cc.Settings().EnableExtendedConnect {
		return nil, errors.New("server does not allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")
	}
	rs, err := t.cc.OpenRequestStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("open a request stream: %w", err)
	}
	h, key := wsconnect.Header(req)
	u := *req.URL
	u.Scheme = "https"
	creq := &http.Request{Method: http.MethodConnect, Proto: "websocket", URL: &u, Host: u.Host, Header: h}
	creq = creq.WithContext(ctx)
	if err := rs.SendRequestHeader(creq); err != nil {
		rs.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		return nil, fmt.Errorf("send the extended CONNECT: %w", err)
	}
	resp, err := rs.ReadResponse()
	if err != nil {
		return nil, fmt.Errorf("read the answer to the extended CONNECT: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.refused = wsconnect.Refused(req, resp)
		rs.Close()
		return nil, t.refused
	}
	t.resp = resp
	return wsconnect.Switching(req, key, resp, &stream{rs}), nil
}

// stream is the request stream as the 101's body: coder/websocket reads
// and writes it and closes it when the WebSocket closes, after the close
// handshake (or to abandon it). Close sends a FIN and stops reading: the
// stream is then done both ways, so quic-go's client closes the
// connection once a server in graceful shutdown (GOAWAY) has no other
// request of it open. (Stopping to read before the handshake is over
// would make the server's Close frame fail: STOP_SENDING.)
type stream struct{ rs *http3.RequestStream }

func (s *stream) Read(b []byte) (int, error)  { return s.rs.Read(b) }
func (s *stream) Write(b []byte) (int, error) { return s.rs.Write(b) }
func (s *stream) Close() error {
	err := s.rs.Close()
	s.rs.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
	return err
}

var _ io.ReadWriteCloser = (*stream)(nil)
