package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/zdtools/zd/internal/h3wsclient"
)

// The WebSocket benchmarks run zd-queue's Proxy in the benchmark's process
// and, where memory is measured, the backend and the clients in child
// processes (this test binary re-executed, see TestMain), so what is
// counted is the proxy's own.
//
//	go test -run XXX -bench 'BenchmarkWebSocket' -benchtime 20000x ./pkg/proxy/

// BenchmarkWebSocket100B: 100-byte messages echoed through the relay on
// one session (256 in flight), the client over HTTP/1.1 (TLS) or over
// HTTP/3; one op is one message and its echo.
func BenchmarkWebSocket100B(b *testing.B) {
	echoSock := startChildEcho(b)
	hp := startH3ProxyB(b, echoSock)
	for _, proto := range []string{"h1", "h3"} {
		b.Run(proto, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c, closeAll, err := dialBench(ctx, proto, hp.tcp, hp.udp, hp.roots)
			if err != nil {
				b.Fatal(err)
			}
			defer closeAll()
			msg := []byte(strings.Repeat("x", 100))
			window := make(chan struct{}, 256)
			errc := make(chan error, 1)
			b.SetBytes(100)
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for i := 0; i < b.N; i++ {
					window <- struct{}{}
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for i := 0; i < b.N; i++ {
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
				<-window
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkIdleSessionMemory: heap and stacks of the proxy's process per
// idle session (client side, relay, backend side), after a GC; HTTP/2
// (RFC 8441) and HTTP/3 clients each on a connection of their own, and
// 100 to a connection (h2x100, h3x100: as a browser's page and its
// WebSockets share one).
func BenchmarkIdleSessionMemory(b *testing.B) {
	for _, proto := range []string{"h1", "h2", "h2x100", "h3", "h3x100"} {
		for _, n := range []int{200, 1000} {
			b.Run(fmt.Sprintf("%s/n=%d", proto, n), func(b *testing.B) {
				echoSock := startChildEcho(b)
				hp := startH3ProxyB(b, echoSock)
				ca := filepath.Join(b.TempDir(), "ca.pem")
				os.WriteFile(ca, hp.caPEM, 0o600)
				before, g0 := memNow(), runtime.NumGoroutine()
				startChild(b, "ZD_PROXY_CHILD=clients", "ZD_PROXY_PROTO="+proto, "ZD_PROXY_N="+strconv.Itoa(n),
					"ZD_PROXY_TCP="+hp.tcp, "ZD_PROXY_UDP="+hp.udp, "ZD_PROXY_CA="+ca)
				deadline := time.Now().Add(2 * time.Minute)
				for hp.p.ws.Sessions("") < n {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d sessions open after 2 minutes", hp.p.ws.Sessions(""), n)
					}
					time.Sleep(10 * time.Millisecond)
				}
				after, g1 := memNow(), runtime.NumGoroutine()
				for b.Loop() {
				}
				b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/float64(n), "bytes/session")
				b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-bytes/session")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/session")
			})
		}
	}
}

type mem struct{ heap, stack uint64 }

func memNow() mem {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return mem{ms.HeapInuse, ms.StackInuse}
}

type benchProxy struct {
	p        *Proxy
	tcp, udp string
	roots    *x509.CertPool
	caPEM    []byte
}

func startH3ProxyB(b *testing.B, backendSock string) *benchProxy {
	t := &testing.T{}
	tlsCfg, roots := selfSigned(t)
	// The idle clients never read, so they would answer no keepalive ping:
	// the pings are armed (their timer is part of a session's cost) but an
	// hour away.
	p, err := New(Config{Backends: []string{"unix://" + backendSock}, TLS: tlsCfg, WSPingInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, Listeners{TCP: []net.Listener{ln}, UDP: []net.PacketConn{pc}}) }()
	b.Cleanup(func() {
		p.ForceStop()
		cancel()
		<-done
		p.Close()
	})
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsCfg.Certificates[0].Certificate[0]})
	return &benchProxy{p: p, tcp: ln.Addr().String(), udp: pc.LocalAddr().String(), roots: roots, caPEM: ca}
}

// dialBench opens one WebSocket through the proxy over proto (h1: wss on
// TCP; h3: RFC 9220 on UDP).
func dialBench(ctx context.Context, proto, tcp, udp string, roots *x509.CertPool) (*websocket.Conn, func(), error) {
	if proto == "h3" {
		c, err := h3wsclient.Dial(ctx, udp, "/ws", h3wsclient.Options{TLS: &tls.Config{RootCAs: roots}})
		if err != nil {
			return nil, nil, err
		}
		return c.Conn, func() { c.CloseNow(); c.CloseQUIC() }, nil
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	c, _, err := websocket.Dial(ctx, "wss://"+tcp+"/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.CloseNow(); tr.CloseIdleConnections() }, nil
}

// startChildEcho runs a coder/websocket echo backend in a child process
// and returns its socket's path.
func startChildEcho(b *testing.B) string {
	sock := filepath.Join(b.TempDir(), "echo.sock")
	startChild(b, "ZD_PROXY_CHILD=echo", "ZD_PROXY_SOCK="+sock)
	return sock
}

// startChild re-executes the test binary in a child mode (runChild) and
// waits for its "ready"; the child ends when its stdin closes, at cleanup.
// It returns the child's command (for its pid).
func startChild(tb testing.TB, env ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=XXX")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatalf("child %v: %v", env, err)
		}
	case <-time.After(3 * time.Minute):
		tb.Fatalf("child %v not ready in 3 minutes", env)
	}
	return cmd
}

// runChild is a child process of the benchmarks: "echo" serves a
// WebSocket echo on ZD_PROXY_SOCK; "clients" opens ZD_PROXY_N idle
// sessions over ZD_PROXY_PROTO. Both say "ready" and run until stdin
// closes.
func runChild(mode string) int {
	switch mode {
	case "echo":
		ln, err := net.Listen("unix", os.Getenv("ZD_PROXY_SOCK"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, p, err := c.Read(context.Background())
				if err != nil {
					return
				}
				if err := c.Write(context.Background(), typ, p); err != nil {
					return
				}
			}
		}))
	case "clients":
		pemb, err := os.ReadFile(os.Getenv("ZD_PROXY_CA"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pemb)
		n, _ := strconv.Atoi(os.Getenv("ZD_PROXY_N"))
		ctx := context.Background()
		var keep []*websocket.Conn
		if proto := os.Getenv("ZD_PROXY_PROTO"); strings.HasPrefix(proto, "h2") {
			// RFC 8441: h2, each session on an HTTP/2 connection of its
			// own; h2x100, 100 sessions on each connection (a browser's
			// page and its WebSockets share one).
			var streams []*h2wsClient
			tr := newH2WSTransport(&tls.Config{RootCAs: roots})
			for i := 0; i < n; i++ {
				if proto == "h2" || i%100 == 0 {
					tr = newH2WSTransport(&tls.Config{RootCAs: roots})
				}
				c, err := dialH2WS(ctx, tr, "https://"+os.Getenv("ZD_PROXY_TCP")+"/ws")
				if err != nil {
					fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
					return 1
				}
				streams = append(streams, c)
			}
			defer runtime.KeepAlive(streams)
		}
		proto, udp := os.Getenv("ZD_PROXY_PROTO"), os.Getenv("ZD_PROXY_UDP")
		var cc *h3wsclient.ClientConn
		for i := 0; i < n && !strings.HasPrefix(proto, "h2"); i++ {
			if proto == "h3x100" {
				if i%100 == 0 {
					qc, err := quic.DialAddr(ctx, udp, &tls.Config{RootCAs: roots, NextProtos: []string{http3.NextProtoH3}}, nil)
					if err != nil {
						fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
						return 1
					}
					cc = h3wsclient.NewClientConn(qc)
				}
				c, err := h3wsclient.DialOn(ctx, cc, udp, "/ws", h3wsclient.Options{})
				if err != nil {
					fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
					return 1
				}
				keep = append(keep, c.Conn)
				continue
			}
			c, _, err := dialBench(ctx, proto, os.Getenv("ZD_PROXY_TCP"), udp, roots)
			if err != nil {
				fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
				return 1
			}
			keep = append(keep, c)
		}
		defer runtime.KeepAlive(keep)
	default:
		fmt.Fprintf(os.Stderr, "unknown ZD_PROXY_CHILD %q\n", mode)
		return 2
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
