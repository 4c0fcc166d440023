package testscripts

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/zdtools/zd/internal/h3wsclient"
)

// TestWebSocketAcceptanceH2H3 is TestWebSocketAcceptance's run over HTTP/2
// and HTTP/3, at once, through one zd-queue (h2 over TLS on its socket, h3
// on UDP): npm ws over Node's own http2 client (RFC 8441 extended CONNECT:
// an implementation independent of zd-queue's) with size.h2PerConn
// sessions to each HTTP/2 connection, and coder/websocket over quic-go's
// HTTP/3 client (internal/h3wsclient, RFC 9220; no independent HTTP/3
// WebSocket client exists here) with size.h3PerConn to each QUIC
// connection, half of them with permessage-deflate. The same numbered
// messages, reloads, kills and books (runAcceptance); ZD_SOAK=1 runs 1,000
// sessions of each: 8 HTTP/2 and 20 HTTP/3 connections.
func TestWebSocketAcceptanceH2H3(t *testing.T) {
	size := acceptSizeFromEnv(t)
	if err := raiseFDLimit(4*size.clients + 1000); err != nil {
		t.Skip(err)
	}
	cert, key, roots := writeCert(t)
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	r.waitHealthy()
	admin := filepath.Join(filepath.Dir(r.dir), "admin.sock")
	qsock := r.startZdQueue("--admin", "unix://"+admin, "--listen-h3", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	udp := h3Listener(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()

	nc := startNodeClients(ctx, t, "npm ws on node http2", "h2", "h2+unix://"+qsock+":/ws", "n", size, size.h2PerConn)
	d := &h3Dialer{addr: udp, tls: &tls.Config{RootCAs: roots}, perConn: size.h3PerConn}
	defer d.close()
	hc := startGoClients(ctx, t, "coder/websocket on quic-go", "h3", "q", size, d.dial)
	defer hc.abort()
	t.Logf("%d h2 sessions on %d connections, %d h3 sessions on %d connections, open after %v",
		nc.sessions(), conns(nc.sessions(), size.h2PerConn), hc.sessions(), len(d.qconns), time.Since(start).Round(time.Millisecond))
	runAcceptance(t, r, admin, size, start, nc, hc)
}

// h3Listener is zd-queue's HTTP/3 address.
func h3Listener(t *testing.T, r *zdRun) string {
	t.Helper()
	ls := queueStatus(t, r).Listeners
	for _, l := range ls {
		if a, ok := strings.CutPrefix(l, "udp/"); ok {
			return a
		}
	}
	t.Fatalf("zd-queue lists no udp/ listener: %v", ls)
	return ""
}

func conns(sessions, perConn int) int { return (sessions + perConn - 1) / perConn }

// h3Dialer opens WebSockets over HTTP/3, perConn to each QUIC connection;
// odd-numbered ones offer permessage-deflate.
type h3Dialer struct {
	addr    string
	tls     *tls.Config
	perConn int
	mu      sync.Mutex
	qconns  []*quic.Conn
	cc      *h3wsclient.ClientConn
}

func (d *h3Dialer) dial(ctx context.Context, i int) (acceptConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i%d.perConn == 0 || d.cc == nil {
		tc := d.tls.Clone()
		tc.NextProtos = []string{http3.NextProtoH3}
		qc, err := quic.DialAddr(ctx, d.addr, tc, nil)
		if err != nil {
			return nil, fmt.Errorf("dial QUIC %s: %w", d.addr, err)
		}
		d.qconns = append(d.qconns, qc)
		d.cc = h3wsclient.NewClientConn(qc)
	}
	var o h3wsclient.Options
	if i%2 == 1 {
		o.WS = &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover}
	}
	c, err := h3wsclient.DialOn(ctx, d.cc, d.addr, fmt.Sprintf("/ws?c=%d", i), o)
	if err != nil {
		return nil, err
	}
	return h3Conn{c}, nil
}

// close ends the QUIC connections (after the sessions' own closes).
func (d *h3Dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, qc := range d.qconns {
		qc.CloseWithError(0, "")
	}
}

// h3Conn is a coder/websocket session on an HTTP/3 request stream.
type h3Conn struct{ c *h3wsclient.Conn }

func (c h3Conn) write(p []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageText, p)
}

func (c h3Conn) read() ([]byte, error) {
	_, p, err := c.c.Read(context.Background())
	return p, err
}

func (c h3Conn) closeCode(err error) int { return int(websocket.CloseStatus(err)) }
func (c h3Conn) close() error            { return c.c.Close(websocket.StatusNormalClosure, "done") }
func (c h3Conn) abort()                  { c.c.CloseNow() }
