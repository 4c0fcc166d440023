package testscripts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zdtools/zd/internal/h3wsclient"
)

// WebSocket over HTTP/3 (RFC 9220) through zd-queue outlives rolling and
// blue-green reloads of the example app behind it, like HTTP/1.1 sessions
// (TestWebSocketAcrossReloadsBehindZdQueue): quic-go's HTTP/3 client sends
// the extended CONNECT to zd-queue's --listen-h3, coder/websocket speaks on
// the request stream, and numbered messages go out from one goroutine and
// come back to another, every echo checked. zdctl status counts the
// sessions as h3. ZD_SOAK=1 runs 200 sessions through 12 reloads,
// --exclusive blue-green among them.
func TestH3WebSocketAcrossReloadsBehindZdQueue(t *testing.T) {
	clients := 8
	reloads := [][]string{{"--strategy", "rolling"}, {"--strategy", "blue-green"}, {"--strategy", "rolling"}, {"--strategy", "blue-green"}}
	if os.Getenv("ZD_SOAK") == "1" {
		clients = 200
		reloads = nil
		for i := 0; i < 4; i++ {
			reloads = append(reloads, []string{"--strategy", "rolling"}, []string{"--strategy", "blue-green"}, []string{"--strategy", "blue-green", "--exclusive"})
		}
	}
	cert, key, roots := writeCert(t)
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	r.waitHealthy()
	r.startZdQueue("--listen-h3", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	var udp string
	for _, l := range queueStatus(t, r).Listeners {
		if a, ok := strings.CutPrefix(l, "udp/"); ok {
			udp = a
		}
	}
	if udp == "" {
		t.Fatalf("zd-queue lists no udp/ listener: %v", queueStatus(t, r).Listeners)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conns := make([]*h3wsclient.Conn, clients)
	books := make([]*tally, clients)
	for i := range conns {
		o := h3wsclient.Options{TLS: &tls.Config{RootCAs: roots}}
		if i%2 == 1 {
			o.WS = &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover}
		}
		c, err := h3wsclient.Dial(ctx, udp, "/ws", o)
		if err != nil {
			t.Fatalf("client %d: dial %s over HTTP/3: %v", i, udp, err)
		}
		defer c.CloseQUIC()
		defer c.CloseNow()
		conns[i], books[i] = c, newTally()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var endMu sync.Mutex
	ended := make([]error, clients)
	end := func(i int, err error) {
		endMu.Lock()
		defer endMu.Unlock()
		if ended[i] == nil {
			ended[i] = err
		}
	}
	endedErr := func(i int) error {
		endMu.Lock()
		defer endMu.Unlock()
		return ended[i]
	}
	for i, c := range conns {
		id, bk := fmt.Sprintf("h3c%d", i), books[i]
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if err := c.Write(ctx, websocket.MessageText, []byte(acceptMsg(id, bk.next()))); err != nil {
					end(i, fmt.Errorf("write: %w", err))
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			for {
				_, p, err := c.Read(ctx)
				if err != nil {
					if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
						end(i, fmt.Errorf("read: %w", err))
					}
					return
				}
				bk.echo(id, string(p))
			}
		}()
	}
	want := fmt.Sprintf("websocket: %d sessions (h3 %d)", clients, clients)
	waitCond(t, "zdctl status counting the h3 sessions", 20*time.Second, func() bool {
		out, _, _ := r.zdctl("status")
		return strings.Contains(out, want)
	})
	for i, args := range reloads {
		r.reload(args...)
		for j := range conns {
			if err := endedErr(j); err != nil {
				t.Fatalf("client %d ended during reload %d %v: %v", j, i, args, err)
			}
		}
	}
	st := queueStatus(t, r)
	if st.WebSocket.Protocols["h3"] != int64(clients) {
		t.Errorf("zd-queue after the reloads: websocket %+v; want %d h3 sessions", st.WebSocket, clients)
	}
	close(stop)
	for _, bk := range books {
		bk.mark()
	}
	waitCond(t, "every echo of what was sent", 30*time.Second, func() bool {
		for _, bk := range books {
			if !bk.caughtUp() {
				return false
			}
		}
		return true
	})
	for i, c := range conns {
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("client %d: close: %v", i, err)
		}
	}
	wg.Wait()
	var res acceptResult
	for i, bk := range books {
		bk.add(&res, nil)
		if err := endedErr(i); err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	lost := 0
	for _, n := range res.Lost {
		lost += n
	}
	if res.Sent == 0 || lost != 0 || res.Duplicated != 0 || res.Reordered != 0 || res.Mismatched != 0 {
		t.Errorf("%d sent, %d echoed: %d lost, %d duplicated, %d reordered, %d wrong; want none", res.Sent, res.Echoed, lost, res.Duplicated, res.Reordered, res.Mismatched)
	}
	t.Logf("%d h3 sessions, %d messages sent, %d echoed in order, %d lost, %d duplicated, %d reordered through %d reloads (%d moved, %d could not move)",
		clients, res.Sent, res.Echoed, lost, res.Duplicated, res.Reordered, len(reloads), st.WebSocket.Moved, st.WebSocket.MoveFailed)
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files and returns their paths and a pool trusting the certificate.
func writeCert(t *testing.T) (cert, key string, roots *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "zd-queue test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(c)
	return cert, key, roots
}
