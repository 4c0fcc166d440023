//lint:file-ignore SA1019 net/http's Transport refuses the :protocol pseudo-header; x/net's
// (deprecated for ordinary use) is the HTTP/2 client that sends an RFC 8441 extended CONNECT.

package testscripts

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"golang.org/x/net/http2"
)

// h2Idle are idle RFC 8441 WebSocket sessions over HTTP/2 (h2c with prior
// knowledge, on zd-queue's unix socket): x/net's Transport puts up to the
// server's 250 streams on each connection, so thousands of sessions cost
// zd-queue a few dozen client descriptors instead of one each.
type h2Idle struct {
	tr      *http2.Transport
	mu      sync.Mutex
	streams []h2Stream
}

type h2Stream struct {
	out  *io.PipeWriter
	body io.ReadCloser
}

func newH2Idle(sock string) *h2Idle {
	return &h2Idle{tr: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

// open opens one session on target with an extended CONNECT; hdr are
// extra fields.
func (h *h2Idle) open(ctx context.Context, target string, hdr http.Header) error {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, "http://zd"+target, pr)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header[":protocol"] = []string{"websocket"}
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := h.tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		pw.Close()
		return fmt.Errorf("extended CONNECT %s answered %s: %s", target, resp.Status, b)
	}
	h.mu.Lock()
	h.streams = append(h.streams, h2Stream{pw, resp.Body})
	h.mu.Unlock()
	return nil
}

// closeAll ends every stream and connection.
func (h *h2Idle) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.streams {
		s.out.Close()
		s.body.Close()
	}
	h.streams = nil
	h.tr.CloseIdleConnections()
}
