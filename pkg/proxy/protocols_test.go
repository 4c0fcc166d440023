package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// selfSigned returns a TLS config for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "zd-queue test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, pool
}

// startTLSProxy serves h1+h2 over TLS on TCP and HTTP/3 on UDP.
func startTLSProxy(t *testing.T, cfg Config) (tcpAddr, udpAddr string, p *Proxy) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, Listeners{TCP: []net.Listener{ln}, UDP: []net.PacketConn{pc}}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		p.Close()
	})
	return ln.Addr().String(), pc.LocalAddr().String(), p
}

func TestH2C(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, b)
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	resp, err := h2cClient(t).Post(px.url+"/h2c", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "HTTP/1.1 POST hi" {
		t.Errorf("h2c prior knowledge: %s %q; want HTTP/2 and the backend spoken to over HTTP/1.1", resp.Proto, b)
	}
}

func TestH2CUpgrade(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// One setting: MAX_CONCURRENT_STREAMS (3) = 100.
	settings := base64.RawURLEncoding.EncodeToString([]byte{0, 3, 0, 0, 0, 100})
	fmt.Fprintf(c, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n", settings)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("Upgrade: h2c answered %q, %v; want 101", line, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	// The server speaks HTTP/2 now: its first frame is SETTINGS (type 4).
	var hdr [9]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[3] != 4 {
		t.Fatalf("after 101: frame header % x, %v; want a SETTINGS frame", hdr, err)
	}
}

func TestH2OverTLSAndHTTP3(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) > 0 || r.ContentLength != 0 {
			// An HTTP/3 GET's stream ends after its headers without a
			// content-length; it must not reach the backend as chunked.
			http.Error(w, "a GET with a body", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Seq"))
	})
	tlsCfg, roots := selfSigned(t)
	tcpAddr, udpAddr, p := startTLSProxy(t, Config{Backends: []string{be.addr}, TLS: tlsCfg})

	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer h3.Close()
	clients := map[string]*http.Client{
		"h2": {Transport: h2, Timeout: 20 * time.Second},
		"h3": {Transport: h3, Timeout: 20 * time.Second},
	}
	_, udpPort, _ := net.SplitHostPort(udpAddr)
	for name, c := range clients {
		resp, err := c.Get("https://" + tcpAddr + "/")
		if name == "h3" {
			resp, err = c.Get("https://" + udpAddr + "/")
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[string]int{"h2": 2, "h3": 3}[name]
		if resp.ProtoMajor != want || string(b) != "https " {
			t.Errorf("%s: %s %q; want HTTP/%d, X-Forwarded-Proto https", name, resp.Proto, b, want)
		}
		if name == "h2" && resp.Header.Get("Alt-Svc") != `h3=":`+udpPort+`"; ma=86400` {
			t.Errorf("Alt-Svc = %q", resp.Header.Get("Alt-Svc"))
		}
	}

	// Both are held while paused and replayed on resume, like HTTP/1.1.
	p.Pause("")
	var wg sync.WaitGroup
	answers := make(chan string, 20)
	for i := 0; i < 10; i++ {
		for name, c := range clients {
			url := "https://" + tcpAddr + "/"
			if name == "h3" {
				url = "https://" + udpAddr + "/"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("X-Seq", fmt.Sprintf("%s-%d", name, i))
				resp, err := c.Do(req)
				if err != nil {
					answers <- "error: " + err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers <- fmt.Sprintf("%d %s", resp.StatusCode, b)
			}()
		}
	}
	waitFor(t, "20 held", func() bool { return held(p) == 20 })
	p.Resume("")
	wg.Wait()
	close(answers)
	n := 0
	for a := range answers {
		if !strings.HasPrefix(a, "200 https h") {
			t.Errorf("held h2/h3 request: %s", a)
		}
		n++
	}
	if n != 20 {
		t.Errorf("%d answers; want 20", n)
	}
}

// HTTPS/1.1: the fast path does the TLS handshake and serves plain
// requests itself; a request it hands to net/http (a chunked upload) is
// still known to have come over TLS. Both reach the backend with
// X-Forwarded-Proto: https. A client that is not speaking TLS at all is
// counted as bad input, and the listener serves on.
func TestHTTPSFastPathAndHandOver(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Header.Get("X-Forwarded-Proto"), b)
	})
	tlsCfg, roots := selfSigned(t)
	tcpAddr, _, p := startTLSProxy(t, Config{Backends: []string{be.addr}, TLS: tlsCfg})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP1(true) // HTTP/1.1 only
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for _, tc := range []struct {
		name string
		body io.Reader
		want string
	}{
		{"fast path", strings.NewReader("fixed"), "https fixed"},
		{"handed over", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")), "https chunked"},
		{"fast path again", nil, "https "},
	} {
		req, _ := http.NewRequest("POST", "https://"+tcpAddr+"/", tc.body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 1 || string(b) != tc.want {
			t.Errorf("%s: %s %q; want HTTP/1.1 %q", tc.name, resp.Proto, b, tc.want)
		}
	}
	if got := rawExchange(t, tcpAddr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); strings.HasPrefix(got, "HTTP/1.1 2") {
		t.Errorf("plain HTTP on the TLS port answered %q", got)
	}
	waitFor(t, "the failed handshake counted", func() bool {
		return metricValue(t, p, `zdqueue_bad_input_total{kind="tls"}`) >= 1
	})
}

// With NoFastH2, an HTTPS connection that chose h2 goes to net/http's
// HTTP/2 server as it is, right after the fast path's handshake.
func TestHTTPSH2HandedToNetHTTP(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	})
	tlsCfg, roots := selfSigned(t)
	tcpAddr, _, _ := startTLSProxy(t, Config{Backends: []string{be.addr}, TLS: tlsCfg, NoFastH2: true})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://" + tcpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "https" {
		t.Errorf("%s %q; want HTTP/2 and https", resp.Proto, b)
	}
}
