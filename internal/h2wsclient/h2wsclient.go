//lint:file-ignore SA1019 net/http's Transport refuses the :protocol pseudo-header (RFC 8441); x/net's deprecated http2.Transport sends it

// Package h2wsclient dials WebSocket over HTTP/2 (RFC 8441) for zd's
// tests and tools: x/net's HTTP/2 client sends the extended CONNECT (Go's
// net/http client refuses the :protocol pseudo-header), and
// coder/websocket (independent of zd-queue's relay) speaks RFC 6455 on the
// stream. It is internal/h3wsclient's twin.
//
// coder/websocket only knows HTTP/1.1 handshakes, so Dial gives it an
// http.Client whose RoundTrip does the HTTP/2 exchange and turns the
// server's 200 into the 101 the library checks (Sec-WebSocket-Accept made
// from its own key, the subprotocol and extensions the server chose), with
// the stream (the response body to read, the request body to write) as
// the 101's body.
package h2wsclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/zdtools/zd/internal/wsconnect"
)

// Options tune Dial.
type Options struct {
	// TLS, when set, is h2 over TLS (NextProtos is set to h2); nil is h2c
	// with prior knowledge.
	TLS *tls.Config
	// Dial makes the TCP connection (nil: a net.Dialer), e.g. through a
	// forwarder a test can cut.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// WS is handed to websocket.Dial (subprotocols, compression, header
	// fields); its HTTPClient is replaced.
	WS *websocket.DialOptions
}

// StatusError is a server's answer other than 200 to the extended CONNECT.
type StatusError = wsconnect.StatusError

// Conn is a WebSocket over a stream of its own HTTP/2 connection.
type Conn struct {
	*websocket.Conn
	// Response is the server's HTTP/2 answer (200, its fields).
	Response *http.Response
	tcp      net.Conn
}

// TCP is the connection the session's HTTP/2 connection runs on.
func (c *Conn) TCP() net.Conn { return c.tcp }

// Dial opens an HTTP/2 connection to addr (host:port) and a WebSocket to
// path ("/ws?x=1") over one stream of it. ctx bounds the dial and, as an
// HTTP/2 stream lives as long as its request's context, the session too.
// Errors: the dial's, a *StatusError (wrapped), or the WebSocket
// handshake's (a server that does not allow extended CONNECT answers the
// CONNECT with an error).
func Dial(ctx context.Context, addr, path string, o Options) (*Conn, error) {
	dial := o.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	rt := &roundTripper{}
	tr := &http2.Transport{}
	scheme := "https"
	if o.TLS == nil {
		scheme = "http"
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			rt.tcp = c
			return c, err
		}
	} else {
		tc := o.TLS.Clone()
		tc.NextProtos = []string{http2.NextProtoTLS}
		tr.TLSClientConfig = tc
		tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if cfg.ServerName == "" {
				cfg = cfg.Clone()
				cfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			rt.tcp = c
			return tc, nil
		}
	}
	rt.tr = tr
	ws := websocket.DialOptions{}
	if o.WS != nil {
		ws = *o.WS
	}
	ws.HTTPClient = &http.Client{Transport: rt}
	c, _, err := websocket.Dial(ctx, scheme+"://"+addr+path, &ws)
	if err != nil {
		tr.CloseIdleConnections()
		if rt.refused != nil {
			return nil, rt.refused
		}
		return nil, err
	}
	return &Conn{Conn: c, Response: rt.resp, tcp: rt.tcp}, nil
}

type roundTripper struct {
	tr      *http2.Transport
	tcp     net.Conn
	resp    *http.Response
	refused error
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	h, key := wsconnect.Header(req)
	h[":protocol"] = []string{"websocket"}
	pr, pw := io.Pipe()
	creq, err := http.NewRequestWithContext(req.Context(), http.MethodConnect, req.URL.String(), pr)
	if err != nil {
		return nil, err
	}
	creq.Header = h
	resp, err := t.tr.RoundTrip(creq)
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("send the extended CONNECT: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.refused = wsconnect.Refused(req, resp)
		resp.Body.Close()
		pw.Close()
		return nil, t.refused
	}
	t.resp = resp
	return wsconnect.Switching(req, key, resp, &stream{r: resp.Body, w: pw}), nil
}

// stream is the HTTP/2 stream as the 101's body: reads from the response
// body, writes into the request body. Close ends the request body
// (END_STREAM) and the response body.
type stream struct {
	r io.ReadCloser
	w *io.PipeWriter
}

func (s *stream) Read(b []byte) (int, error)  { return s.r.Read(b) }
func (s *stream) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s *stream) Close() error {
	err := s.w.Close()
	s.r.Close()
	return err
}

var _ io.ReadWriteCloser = (*stream)(nil)
