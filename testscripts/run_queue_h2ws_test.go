//lint:file-ignore SA1019 net/http's Transport refuses the :protocol pseudo-header; x/net's
// (deprecated for ordinary use) is the HTTP/2 client that sends an RFC 8441 extended CONNECT.

package testscripts

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// WebSocket sessions over HTTP/2 (RFC 8441) through zd-queue outlive every
// reload behind it, as HTTP/1.1 ones do: sessions on one h2c connection
// (x/net's client, RFC 6455 framing written here) send numbered messages
// to the example app's echo while zd-run reloads it with rolling,
// blue-green and --exclusive; the backend side is an ordinary HTTP/1.1
// handshake to each new worker. Every echo is checked, and zdctl queue
// status counts the sessions as h2.
func TestH2WebSocketAcrossReloadsBehindZdQueue(t *testing.T) {
	const clients = 5
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	r.waitHealthy()
	qsock := r.startZdQueue()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}}
	defer tr.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, clients)
	counts := make([]int, clients)
	for i := range clients {
		s, err := dialH2WS(ctx, tr, "http://zd/ws")
		if err != nil {
			t.Fatalf("client %d: extended CONNECT through zd-queue: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.out.Close()
			for n := 0; ; n++ {
				select {
				case <-stop:
					s.out.Write(maskedFrame(8, []byte{0x03, 0xE8}))
					return
				default:
				}
				want := fmt.Sprintf("c%d m%d", i, n)
				if _, err := s.out.Write(maskedFrame(1, []byte(want))); err != nil {
					errs[i] = fmt.Errorf("client %d: write %d: %v", i, n, err)
					return
				}
				op, got, err := s.recv()
				if err != nil || op != 1 || string(got) != want {
					errs[i] = fmt.Errorf("client %d: echo %d = op %d %q, %v; want %q", i, n, op, got, err, want)
					return
				}
				counts[i] = n + 1
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	out, _, _ := r.zdctl("queue", "status")
	if line := firstLine(out, "websocket: "); !strings.Contains(line, fmt.Sprintf("h2 %d", clients)) {
		t.Errorf("zdctl queue status: %q; want the %d sessions counted as h2\n%s", line, clients, out)
	}
	for _, args := range queueReloads {
		r.reload(args...)
	}
	close(stop)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Error(err)
		}
		total += counts[i]
	}
	out, _, _ = r.zdctl("queue", "status")
	line := firstLine(out, "websocket: ")
	moved := -1
	if _, rest, ok := strings.Cut(line, "moved "); ok {
		fmt.Sscanf(rest, "%d", &moved)
	}
	// Every reload replaces both workers, and so the backend of about every
	// session (24 to 26 moves seen in runs of 5 sessions x 5 reloads).
	if want := clients * len(queueReloads) / 2; moved < want {
		t.Errorf("zdctl queue status: %q; want at least %d moves (%d sessions, %d reloads)", line, want, clients, len(queueReloads))
	}
	t.Logf("%d h2 sessions, %d echoes checked through %d reloads; %s", clients, total, len(queueReloads), line)
}

// h2wsConn is one RFC 8441 WebSocket: what the client writes and the
// stream it reads.
type h2wsConn struct {
	out *io.PipeWriter
	in  *bufio.Reader
}

func dialH2WS(ctx context.Context, tr *http2.Transport, url string) (*h2wsConn, error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, url, pr)
	if err != nil {
		return nil, err
	}
	req.Header[":protocol"] = []string{"websocket"}
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	return &h2wsConn{out: pw, in: bufio.NewReader(resp.Body)}, nil
}

// maskedFrame is one client frame (FIN, masked; payload under 64 KiB).
func maskedFrame(op byte, p []byte) []byte {
	f := []byte{0x80 | op}
	if len(p) < 126 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	var key [4]byte
	rand.Read(key[:])
	f = append(f, key[:]...)
	for i, b := range p {
		f = append(f, b^key[i%4])
	}
	return f
}

// recv reads one unfragmented, unmasked server frame.
func (c *h2wsConn) recv() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.in, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("frame header % x: want FIN and no mask from the server", h)
	}
	n := int(h[1] & 0x7F)
	if n == 126 {
		var l [2]byte
		if _, err := io.ReadFull(c.in, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	} else if n == 127 {
		return 0, nil, fmt.Errorf("frame over 64 KiB")
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.in, p)
	return h[0] & 0x0F, p, err
}
