//lint:file-ignore SA1019 x/net's http2.Transport (deprecated for ordinary use) is the HTTP/2 client that sends an RFC 8441 extended CONNECT.

package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/zdtools/zd/internal/h3wsclient"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/snapshot"
)

// TestSnapshotWebSocketRemote: a dump's ws-session records carry the
// client's address, for a session over HTTP/1.1, HTTP/2 (RFC 8441) and
// HTTP/3 (RFC 9220) alike: each is the address the client dialled from.
func TestSnapshotWebSocketRemote(t *testing.T) {
	dir := sockDir(t)
	var echo wsEcho
	be := newTestBackend(t, dir, "a", echo.handler)
	hp := startH3Proxy(t, Config{Backends: []string{be.addr}})
	srv, err := control.Listen(filepath.Join(dir, "queue.sock"), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(sctx, hp.p.Handle) }()
	defer func() { scancel(); <-served; srv.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Each client's own end of its connection, by the session's target.
	var mu sync.Mutex
	local := map[string]string{}
	dialTLS := func(target string, proto string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: hp.roots, NextProtos: []string{proto}}}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				local[target] = c.LocalAddr().String()
				mu.Unlock()
			}
			return c, err
		}
	}

	h1 := &http.Client{Transport: &http.Transport{DialTLSContext: dialTLS("/ws?via=h1", "http/1.1")}}
	c1, _, err := websocket.Dial(ctx, "wss://"+hp.tcp+"/ws?via=h1", &websocket.DialOptions{HTTPClient: h1})
	if err != nil {
		t.Fatalf("HTTP/1.1 WebSocket: %v", err)
	}
	defer c1.CloseNow()

	tr := h2wsTransport(t, &tls.Config{RootCAs: hp.roots})
	h2dial := dialTLS("/ws?via=h2", "h2")
	tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return h2dial(ctx, network, addr)
	}
	c2, err := dialH2WS(ctx, tr, "https://"+hp.tcp+"/ws?via=h2")
	if err != nil {
		t.Fatalf("HTTP/2 WebSocket: %v", err)
	}
	defer c2.close()

	c3, err := hp.dial(ctx, "/ws?via=h3", h3wsclient.Options{})
	if err != nil {
		t.Fatalf("HTTP/3 WebSocket: %v", err)
	}
	defer c3.CloseQUIC()
	defer c3.CloseNow()
	// Its UDP socket is bound to the unspecified address: the proxy sees
	// the port from 127.0.0.1.
	_, port, _ := net.SplitHostPort(c3.QUIC.LocalAddr().String())
	local["/ws?via=h3"] = net.JoinHostPort("127.0.0.1", port)

	waitFor(t, "3 sessions", func() bool { return hp.p.Status().WebSocket.Sessions == 3 })
	recs, _, _, err := snapshotCall(t, srv.Path(), queueapi.SnapshotArgs{Filter: "kind=ws-session"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*snapshot.Record{}
	for _, r := range recs {
		got[r.Target] = r
	}
	for target, proto := range map[string]string{"/ws?via=h1": "ws", "/ws?via=h2": "ws-h2", "/ws?via=h3": "ws-h3"} {
		r := got[target]
		if r == nil {
			t.Errorf("no ws-session record of %s in %d records", target, len(recs))
			continue
		}
		mu.Lock()
		want := local[target]
		mu.Unlock()
		if r.Protocol != proto || r.Remote != want || want == "" {
			t.Errorf("ws-session %s: protocol %q, remote %q; want %s from %q (the client's address)", target, r.Protocol, r.Remote, proto, want)
		}
	}
}
