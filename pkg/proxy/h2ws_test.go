//lint:file-ignore SA1019 net/http's Transport refuses the :protocol pseudo-header; x/net's
// (deprecated for ordinary use) is the HTTP/2 client that sends an RFC 8441 extended CONNECT.

package proxy

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// The client side of these tests is x/net's HTTP/2 Transport, which sends
// an extended CONNECT only once the server's SETTINGS allowed it, with
// RFC 6455 framing written here (masked, as a client must), so nothing of
// the relay's own code talks to the relay.

// h2wsTransport is an HTTP/2 client: h2c with prior knowledge, or h2 over
// TLS when roots is set. All of a test's sessions share its connection.
func h2wsTransport(t *testing.T, roots *tls.Config) *http2.Transport {
	tr := newH2WSTransport(roots)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// newH2WSTransport is h2wsTransport for a caller that closes it itself.
func newH2WSTransport(roots *tls.Config) *http2.Transport {
	tr := &http2.Transport{TLSClientConfig: roots}
	if roots == nil {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	return tr
}

// h2wsClient is one RFC 8441 WebSocket over an HTTP/2 stream.
type h2wsClient struct {
	resp    *http.Response
	out     *io.PipeWriter
	in      *bufio.Reader
	deflate bool
}

// dialH2WS opens a WebSocket at url (http:// or https://) with an
// extended CONNECT; hdr are extra fields, name and value in turn.
func dialH2WS(ctx context.Context, tr *http2.Transport, url string, hdr ...string) (*h2wsClient, error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, url, pr)
	if err != nil {
		return nil, err
	}
	req.Header[":protocol"] = []string{"websocket"}
	req.Header.Set("Sec-WebSocket-Version", "13")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pw.Close()
		return nil, fmt.Errorf("extended CONNECT answered %d: %s", resp.StatusCode, b)
	}
	c := &h2wsClient{resp: resp, out: pw, in: bufio.NewReader(resp.Body)}
	c.deflate = strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	return c, nil
}

// send writes one masked frame; compressed (RSV1) when deflate is on and
// compress asks for it.
func (c *h2wsClient) send(op byte, payload []byte, compress bool) error {
	rsv1 := false
	if compress && c.deflate && op != 8 {
		payload, rsv1 = deflateMessage(payload), true
	}
	_, err := c.out.Write(clientFrame(op, rsv1, payload))
	return err
}

func clientFrame(op byte, rsv1 bool, payload []byte) []byte {
	b0 := 0x80 | op
	if rsv1 {
		b0 |= 0x40
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	var key [4]byte
	rand.Read(key[:])
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

func deflateMessage(p []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// recv reads one message (continuations joined, inflated when RSV1 was
// set on its first frame). Server frames must not be masked.
func (c *h2wsClient) recv() (op byte, msg []byte, err error) {
	var compressed bool
	for first := true; ; first = false {
		var h [2]byte
		if _, err := io.ReadFull(c.in, h[:]); err != nil {
			return 0, nil, err
		}
		if h[1]&0x80 != 0 {
			return 0, nil, errors.New("masked frame from the server")
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(c.in, l[:])
			n = uint64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(c.in, l[:])
			n = binary.BigEndian.Uint64(l[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.in, p); err != nil {
			return 0, nil, err
		}
		if first {
			op, compressed = h[0]&0x0F, h[0]&0x40 != 0
		}
		msg = append(msg, p...)
		if h[0]&0x80 != 0 {
			break
		}
	}
	if compressed {
		if !c.deflate {
			return 0, nil, errors.New("RSV1 set without permessage-deflate")
		}
		r := flate.NewReader(io.MultiReader(bytes.NewReader(msg), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
		var out bytes.Buffer
		_, err := io.Copy(&out, r)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("inflate: %v", err)
		}
		msg = out.Bytes()
	}
	return op, msg, nil
}

// close sends Close(1000), reads up to the server's Close reply and then
// the end of the stream: END_STREAM, not a reset.
func (c *h2wsClient) close() error {
	if err := c.send(8, []byte{0x03, 0xE8}, false); err != nil {
		return err
	}
	for {
		op, p, err := c.recv()
		if err != nil {
			return fmt.Errorf("waiting for the Close reply: %v", err)
		}
		if op == 8 {
			if len(p) < 2 || binary.BigEndian.Uint16(p) != 1000 {
				return fmt.Errorf("Close reply %x; want 1000", p)
			}
			break
		}
	}
	c.out.Close() // END_STREAM from our side
	if b, err := io.ReadAll(c.in); err != nil || len(b) > 0 {
		return fmt.Errorf("after the Close reply: %d bytes, %v; want END_STREAM", len(b), err)
	}
	return nil
}

// wsSeen is what the backends saw, by Zd-Session-Id.
type wsSeen struct {
	mu       sync.Mutex
	resumes  map[string][]string // Zd-Resume of each attach ("" on the first)
	got      map[string][]string // messages the backends read, in order
	first    map[string]http.Header
	backends map[string][]string // which backend served each attach
}

// h2wsEcho is a backend that answers each message with "echo " and the
// message, choosing the "chat" subprotocol, and records what it saw.
func h2wsEcho(name string, seen *wsSeen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "plain")
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		id := r.Header.Get("Zd-Session-Id")
		seen.mu.Lock()
		seen.resumes[id] = append(seen.resumes[id], r.Header.Get("Zd-Resume"))
		seen.backends[id] = append(seen.backends[id], name)
		if seen.first[id] == nil {
			seen.first[id] = r.Header.Clone()
		}
		seen.mu.Unlock()
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			seen.mu.Lock()
			seen.got[id] = append(seen.got[id], string(b))
			seen.mu.Unlock()
			if err := c.Write(context.Background(), typ, append([]byte("echo "), b...)); err != nil {
				return
			}
		}
	}
}

func newWSSeen() *wsSeen {
	return &wsSeen{resumes: map[string][]string{}, got: map[string][]string{},
		first: map[string]http.Header{}, backends: map[string][]string{}}
}

// TestH2WebSocketSurvivesDrains: RFC 8441 sessions, all on one HTTP/2
// connection (h2c and h2 over TLS), keep going while their backends are
// drained in turn; every numbered message goes both ways exactly once, in
// order; the backends see ordinary RFC 6455 handshakes carrying the
// client's fields, X-Forwarded-*, the same Zd-Session-Id on every attach
// and a growing Zd-Resume; the sessions count as h2; each ends with a
// clean close and END_STREAM. An ordinary request on the same connection
// is served meanwhile.
func TestH2WebSocketSurvivesDrains(t *testing.T) {
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) { testH2WebSocketDrains(t, mode) })
	}
}

func testH2WebSocketDrains(t *testing.T, mode string) {
	const clients, msgs, drains = 6, 240, 6
	dir := sockDir(t)
	seen := newWSSeen()
	a := newTestBackend(t, dir, "a", h2wsEcho("a", seen))
	b := newTestBackend(t, dir, "b", h2wsEcho("b", seen))
	cfg := Config{Backends: []string{a.addr, b.addr}}
	switch mode {
	case "net/http h2c":
		cfg.NoFastPath = true
		mode = "h2c"
	case "net/http tls":
		cfg.NoFastH2 = true
		mode = "tls"
	}
	var px *Proxy
	var base string
	var tr *http2.Transport
	if mode == "tls" {
		tc, pool := selfSigned(t)
		cfg.TLS = tc
		addr, _, p := startTLSProxy(t, cfg)
		px, base = p, "https://"+addr
		tr = h2wsTransport(t, &tls.Config{RootCAs: pool})
	} else {
		r := startProxy(t, cfg)
		px, base = r.p, r.url
		tr = h2wsTransport(t, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var progress sync.WaitGroup
	progress.Add(clients)
	errs := make(chan error, clients)
	var drained atomic.Bool
	sent := make([]int, clients) // messages each client sent
	for i := range clients {
		go func() {
			errs <- func() error {
				c, err := dialH2WS(ctx, tr, fmt.Sprintf("%s/ws?client=%d", base, i),
					"Sec-WebSocket-Protocol", "chat, other", "Sec-WebSocket-Extensions", "permessage-deflate",
					"Origin", base, "Cookie", fmt.Sprintf("c=%d", i))
				if err != nil {
					progress.Done()
					return fmt.Errorf("client %d: %v", i, err)
				}
				if p := c.resp.Header.Get("Sec-WebSocket-Protocol"); p != "chat" {
					progress.Done()
					return fmt.Errorf("client %d: subprotocol %q; want the backend's choice, chat", i, p)
				}
				if !c.deflate {
					progress.Done()
					return fmt.Errorf("client %d: no permessage-deflate in %q", i, c.resp.Header.Get("Sec-WebSocket-Extensions"))
				}
				// Numbered messages until the drains are done (at least msgs,
				// at most 100 times that).
				for m := 0; m < 100*msgs; m++ {
					if m == 10 {
						progress.Done()
					}
					if m >= msgs && drained.Load() {
						sent[i] = m
						break
					}
					want := fmt.Sprintf("%d:%d", i, m)
					if m%7 == 3 {
						// Long enough for zd-queue to compress its echo; sent
						// compressed too.
						want += ":" + strings.Repeat("x", 300)
					}
					if err := c.send(1, []byte(want), m%7 == 3); err != nil {
						return fmt.Errorf("client %d: send %d: %v", i, m, err)
					}
					op, got, err := c.recv()
					if err != nil || op != 1 || string(got) != "echo "+want {
						return fmt.Errorf("client %d: message %d: op %d %.40q, %v; want %.40q", i, m, op, got, err, "echo "+want)
					}
					if m%20 == 0 {
						time.Sleep(time.Millisecond) // let the drains land mid-stream
					}
				}
				return c.close()
			}()
		}()
	}
	progress.Wait()

	// An ordinary request on the same connection.
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/plain", nil)
	if resp, err := tr.RoundTrip(req); err != nil {
		t.Errorf("GET beside the sessions: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	st := px.Status()
	if st.WebSocket.Protocols["h2"] != clients {
		t.Errorf("Status: websocket.protocols %v; want h2 %d", st.WebSocket.Protocols, clients)
	}
	onBackends := 0
	for _, b := range st.Backends {
		onBackends += b.WSProtocols["h2"]
	}
	if onBackends != clients {
		t.Errorf("Status: ws_protocols h2 over the backends %d; want %d", onBackends, clients)
	}
	if v := metricValue(t, px, `zdqueue_ws_backend_sessions{backend="`+a.addr+`",protocol="h2"}`) +
		metricValue(t, px, `zdqueue_ws_backend_sessions{backend="`+b.addr+`",protocol="h2"}`); v != clients {
		t.Errorf("zdqueue_ws_backend_sessions with protocol h2: %v; want %d", v, clients)
	}

	for d := range drains {
		from, to := a, b
		if d%2 == 1 {
			from, to = b, a
		}
		if err := px.Resume(to.addr); err != nil {
			t.Fatal(err)
		}
		res, err := px.Drain(ctx, from.addr, 10*time.Second)
		if err != nil || !res.Drained {
			t.Fatalf("drain %s: %+v, %v", from.addr, res, err)
		}
		if n := px.ws.Sessions(from.addr); n != 0 {
			t.Fatalf("after draining %s: %d sessions still on it", from.addr, n)
		}
		// Every session is on the other backend before the next drain,
		// so each drain moves them all.
		waitFor(t, "the sessions to re-attach to "+to.addr, func() bool { return px.ws.Sessions(to.addr) == clients })
	}
	drained.Store(true)
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	seen.mu.Lock()
	defer seen.mu.Unlock()
	if len(seen.got) != clients {
		t.Errorf("backends saw %d sessions; want %d", len(seen.got), clients)
	}
	for id, got := range seen.got {
		h := seen.first[id]
		i := -1
		fmt.Sscanf(h.Get("Cookie"), "c=%d", &i)
		for m, g := range got {
			want := fmt.Sprintf("%d:%d", i, m)
			if !strings.HasPrefix(g, want) || (len(g) > len(want) && g[len(want)] != ':') {
				t.Errorf("session %d: backends read message %d as %.40q; want %q (lost, duplicated or reordered)", i, m, g, want)
				break
			}
		}
		if i < 0 || i >= clients || len(got) != sent[i] {
			t.Errorf("session %d: backends read %d messages; want %d", i, len(got), sent[max(i, 0)])
		}
		if n := len(seen.resumes[id]) - 1; n < drains-1 {
			t.Errorf("session %d moved %d times; want at least %d (all but the first of %d drains move every session)", i, n, drains-1, drains)
		}
		for n, r := range seen.resumes[id] {
			if want := fmt.Sprint(n); (n == 0 && r != "") || (n > 0 && r != want) {
				t.Errorf("session %d: Zd-Resume %v; want none, then 1, 2, ...", i, seen.resumes[id])
				break
			}
		}
		wantProto := "http"
		if mode == "tls" {
			wantProto = "https"
		}
		host := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
		for _, c := range []struct{ k, want string }{
			{"X-Forwarded-For", "127.0.0.1"}, {"X-Forwarded-Proto", wantProto}, {"X-Forwarded-Host", host},
			{"Origin", base}, {"Sec-Websocket-Protocol", "chat, other"},
		} {
			if got := h.Get(c.k); got != c.want {
				t.Errorf("session %d: backend saw %s %q; want %q", i, c.k, got, c.want)
			}
		}
		if len(h[":protocol"]) > 0 {
			t.Errorf("session %d: the backend got the :protocol pseudo-header", i)
		}
	}
	waitFor(t, "the sessions to end", func() bool { return px.ws.Sessions("") == 0 })
	ws := px.ws.Stats()
	t.Logf("%s: %v messages each way per session; moved %d sessions, failed %d, closes %v", mode, sent, ws.Moved, ws.MoveFailed, ws.Closes)
	for _, cc := range ws.Closes {
		if cc.Code != 1000 {
			t.Errorf("a session ended with %d (%s); want every one closed 1000 by its client", cc.Code, cc.Reason)
		}
	}
}

// openWS opens an RFC 8441 WebSocket on stream id of a raw connection and
// reads up to its 200.
func (r *rawH2) openWS(t *testing.T, id uint32, authority string) {
	t.Helper()
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: r.block(
		":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", authority, ":path", "/ws",
		"sec-websocket-version", "13")})
	if got := r.answer(t, id); got != fmt.Sprintf("200 on %d", id) {
		t.Fatalf("extended CONNECT on stream %d: %s; want 200", id, got)
	}
}

// TestH2ExtendedConnectBadInput: zd-queue's HTTP/2 server advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT missing a
// pseudo-header, :protocol on another method, or one that ends the
// stream at once is malformed (RST_STREAM PROTOCOL_ERROR, RFC 8441
// section 4 and RFC 9113 section 8.1.1); a plain CONNECT keeps its
// PROTOCOL_ERROR; an unknown :protocol is 501 and a wrong
// Sec-WebSocket-Version 426; DATA after the client's END_STREAM is
// STREAM_CLOSED; a client's RST_STREAM ends its session as "client gone"
// and the backend is told; an unmasked client frame gets Close 1002 and
// END_STREAM. The connection serves on after each.
func TestH2ExtendedConnectBadInput(t *testing.T) {
	dir := sockDir(t)
	seen := newWSSeen()
	be := newTestBackend(t, dir, "a", h2wsEcho("a", seen))
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)

	// The server's SETTINGS come first.
	f, err := r.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %T; want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingEnableConnectProtocol); !ok || v != 1 {
		t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d, %v; want 1", v, ok)
	}
	r.fr.WriteSettingsAck()

	a := px.addr
	for i, c := range []struct {
		name   string
		fields []string
		end    bool
		want   string
	}{
		{"missing :path", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", a}, false, "RST %d PROTOCOL_ERROR"},
		{"missing :scheme", []string{":method", "CONNECT", ":protocol", "websocket", ":authority", a, ":path", "/ws"}, false, "RST %d PROTOCOL_ERROR"},
		{"missing :authority", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/ws", "host", a}, false, "RST %d PROTOCOL_ERROR"},
		{"relative :path", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", a, ":path", "ws"}, false, "RST %d PROTOCOL_ERROR"},
		{":protocol on GET", []string{":method", "GET", ":protocol", "websocket", ":scheme", "http", ":authority", a, ":path", "/ws"}, false, "RST %d PROTOCOL_ERROR"},
		{"END_STREAM on the CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", a, ":path", "/ws"}, true, "RST %d PROTOCOL_ERROR"},
		{"plain CONNECT", []string{":method", "CONNECT", ":authority", a}, false, "RST %d PROTOCOL_ERROR"},
		{"unknown :protocol", []string{":method", "CONNECT", ":protocol", "connect-udp", ":scheme", "http", ":authority", a, ":path", "/x", "sec-websocket-version", "13"}, false, "501 on %d"},
		{"Sec-WebSocket-Version 8", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", a, ":path", "/ws", "sec-websocket-version", "8"}, false, "426 on %d"},
		{"no Sec-WebSocket-Version", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", a, ":path", "/ws"}, false, "426 on %d"},
	} {
		id := uint32(2*i + 1)
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: c.end, BlockFragment: r.block(c.fields...)})
		if got, want := r.answer(t, id), fmt.Sprintf(c.want, id); got != want {
			t.Errorf("%s: %s; want %s", c.name, got, want)
		}
		if strings.HasPrefix(c.want, "RST") {
			// A refused stream sends nothing more; the next case reads on.
			continue
		}
		untilEnd(t, r, id)
	}
	seen.mu.Lock()
	if len(seen.resumes) != 0 {
		t.Errorf("a refused handshake reached the backend: %v", seen.resumes)
	}
	seen.mu.Unlock()

	// DATA after the client's END_STREAM on a live session.
	id := uint32(101)
	r.openWS(t, id, a)
	r.fr.WriteData(id, true, clientFrame(1, false, []byte("last")))
	r.fr.WriteData(id, false, clientFrame(1, false, []byte("too late")))
	if got := r.untilReset(t, id); got != http2.ErrCodeStreamClosed {
		t.Errorf("DATA after END_STREAM: reset %v; want STREAM_CLOSED", got)
	}

	// The client resets a live session: its session ends as "client
	// gone", and the backend gets Close 1001.
	id = 103
	r.openWS(t, id, a)
	r.fr.WriteData(id, false, clientFrame(1, false, []byte("hello")))
	if p := r.dataOn(t, id); !bytes.Contains(p, []byte("echo hello")) {
		t.Errorf("echo on stream %d: %q", id, p)
	}
	before := closesBy(px.p, wsrelay.ReasonClientGone)
	r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	waitFor(t, "the reset session to end", func() bool { return closesBy(px.p, wsrelay.ReasonClientGone) > before && px.p.ws.Sessions("") == 0 })

	// A client frame that breaks RFC 6455 (unmasked): Close 1002 on the
	// stream, then END_STREAM.
	id = 107
	r.openWS(t, id, a)
	r.fr.WriteData(id, false, []byte{0x81, 0x02, 'h', 'i'})
	if p := r.dataOn(t, id); len(p) < 4 || p[0] != 0x88 || binary.BigEndian.Uint16(p[2:]) != 1002 {
		t.Errorf("an unmasked client frame: % x; want Close 1002", p)
	}
	untilEnd(t, r, id)

	// The connection still serves.
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 109, EndHeaders: true, EndStream: true, BlockFragment: r.block(rawGET...)})
	if got := r.answer(t, 109); got != "200 on 109" {
		t.Errorf("GET after the bad input: %s", got)
	}
}

// answer reads frames until stream id is answered: "RST 3 PROTOCOL_ERROR"
// or "501 on 3".
func (r *rawH2) answer(t *testing.T, id uint32) string {
	t.Helper()
	for range 200 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return "read error: " + err.Error()
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return fmt.Sprintf("RST %d %v", id, f.ErrCode)
			}
		case *http2.GoAwayFrame:
			return fmt.Sprintf("GOAWAY %v", f.ErrCode)
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				return fmt.Sprintf("%s on %d", f.PseudoValue("status"), id)
			}
		}
	}
	return "no answer"
}

// closesBy counts the relay's session ends with reason.
func closesBy(p *Proxy, reason string) uint64 {
	var n uint64
	for _, c := range p.ws.Stats().Closes {
		if c.Reason == reason {
			n += c.Count
		}
	}
	return n
}

// untilReset reads frames until stream id is reset and returns the code.
func (r *rawH2) untilReset(t *testing.T, id uint32) http2.ErrCode {
	t.Helper()
	for range 200 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for RST_STREAM on %d: %v", id, err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == id {
			return rst.ErrCode
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("waiting for RST_STREAM on %d: GOAWAY %v", id, g.ErrCode)
		}
	}
	t.Fatalf("no RST_STREAM on %d", id)
	return 0
}

// dataOn reads frames until DATA arrives on stream id and returns it.
func (r *rawH2) dataOn(t *testing.T, id uint32) []byte {
	t.Helper()
	for range 200 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for DATA on %d: %v", id, err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == id && len(d.Data()) > 0 {
			return bytes.Clone(d.Data())
		}
	}
	t.Fatalf("no DATA on %d", id)
	return nil
}

// TestH2WebSocketGracefulStop: a graceful stop ends an HTTP/2 session at
// once with Close 1012 (Service Restart: reconnect now) and END_STREAM;
// the connection it keeps busy does not hold the stop for the grace.
func TestH2WebSocketGracefulStop(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", h2wsEcho("a", newWSSeen()))
	px := startProxy(t, Config{Backends: []string{be.addr}, ShutdownGrace: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialH2WS(ctx, h2wsTransport(t, nil), px.url+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(1, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.recv(); err != nil || string(got) != "echo one" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	start := time.Now()
	stopped := make(chan struct{})
	go func() { px.stop(); close(stopped) }()
	op, p, err := c.recv()
	if err != nil || op != 8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1012 {
		t.Fatalf("on a graceful stop the client got op %d %q, %v; want Close 1012", op, p, err)
	}
	c.send(8, p[:2], false)
	c.out.Close()
	if b, err := io.ReadAll(c.in); err != nil || len(b) > 0 {
		t.Errorf("after the Close: %d bytes, %v; want END_STREAM", len(b), err)
	}
	within(t, stopped, 10*time.Second, "the stop waited on the HTTP/2 session's connection")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("graceful stop took %v with an HTTP/2 session open; want it ended at once, not after the grace", d)
	}
}

// TestH2WebSocketNetHTTP: net/http's HTTP/2 servers (x/net's on the h2c
// Upgrade path, the bundled one with --fast-path=false or Config.NoFastH2)
// advertise SETTINGS_ENABLE_CONNECT_PROTOCOL only when the process starts
// with GODEBUG=http2xconnect=1, and then their extended CONNECTs are
// served like the fast server's. Without it (this process) none of them
// advertises it; with it (a child process of this test binary) sessions
// run through drains on each.
func TestH2WebSocketNetHTTP(t *testing.T) {
	if os.Getenv("ZD_TEST_XCONNECT_CHILD") == "1" {
		for _, mode := range []string{"net/http h2c", "net/http tls"} {
			t.Run(mode, func(t *testing.T) { testH2WebSocketDrains(t, mode) })
		}
		t.Run("h2c upgrade", func(t *testing.T) { testH2CUpgradeWebSocket(t, true) })
		return
	}
	if strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		t.Skip("GODEBUG=http2xconnect=1 is set for this process; the child case covers it")
	}
	t.Run("h2c upgrade off", func(t *testing.T) { testH2CUpgradeWebSocket(t, false) })
	for _, cfg := range []Config{{NoFastPath: true}, {NoFastH2: true}} {
		dir := sockDir(t)
		be := newTestBackend(t, dir, "a", nil)
		cfg.Backends = []string{be.addr}
		px := startProxy(t, cfg)
		r := dialRawH2(t, px.addr)
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); !ok {
			t.Errorf("NoFastPath %v, NoFastH2 %v: first frame %T; want SETTINGS", cfg.NoFastPath, cfg.NoFastH2, f)
		} else if _, on := sf.Value(http2.SettingEnableConnectProtocol); on {
			t.Errorf("NoFastPath %v, NoFastH2 %v: net/http's HTTP/2 server advertises ENABLE_CONNECT_PROTOCOL without GODEBUG=http2xconnect=1", cfg.NoFastPath, cfg.NoFastH2)
		}
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestH2WebSocketNetHTTP$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "ZD_TEST_XCONNECT_CHILD=1", "GODEBUG=http2xconnect=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestH2WebSocketNetHTTP/h2c_upgrade")) {
		t.Errorf("with GODEBUG=http2xconnect=1: %v\n%s", err, out)
	}
}

// testH2CUpgradeWebSocket upgrades a connection to h2c (RFC 7540 section
// 3.2, x/net's server) and checks its SETTINGS: with served, they
// advertise extended CONNECT and a WebSocket on stream 3 echoes; without,
// they do not.
func testH2CUpgradeWebSocket(t *testing.T, served bool) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", h2wsEcho("a", newWSSeen()))
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n") // MAX_CONCURRENT_STREAMS = 100
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("Upgrade: h2c answered %v, %v; want 101", resp, err)
	}
	io.WriteString(c, h2Preface)
	r := &rawH2{conn: c, fr: http2.NewFramer(c, br)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.buf)
	r.fr.WriteSettings()
	f, err := r.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("after 101: %T; want SETTINGS", f)
	}
	v, on := sf.Value(http2.SettingEnableConnectProtocol)
	if !served {
		if on {
			t.Errorf("the h2c Upgrade path advertises ENABLE_CONNECT_PROTOCOL (%d) without GODEBUG=http2xconnect=1", v)
		}
		return
	}
	if !on || v != 1 {
		t.Fatalf("the h2c Upgrade path under GODEBUG=http2xconnect=1: ENABLE_CONNECT_PROTOCOL %d, %v; want 1", v, on)
	}
	r.fr.WriteSettingsAck()
	r.openWS(t, 3, "x")
	r.fr.WriteData(3, false, clientFrame(1, false, []byte("over x/net")))
	if p := r.dataOn(t, 3); !bytes.Contains(p, []byte("echo over x/net")) {
		t.Errorf("echo on the upgraded connection: %q", p)
	}
	r.fr.WriteData(3, false, clientFrame(8, false, []byte{0x03, 0xE8}))
	if p := r.dataOn(t, 3); len(p) < 4 || p[0] != 0x88 || binary.BigEndian.Uint16(p[2:]) != 1000 {
		t.Errorf("Close reply: % x; want 88 02 03 e8", p)
	}
}

// nodeDir returns testdata/node when node and its npm packages are there
// (.ci/run installs them), or skips the test saying what is missing.
func nodeDir(t *testing.T, pkg string) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install nodejs and run npm ci in pkg/proxy/testdata/node (as .ci/run does)")
	}
	dir, _ = filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil {
		t.Skipf("npm package %s missing: run npm ci in pkg/proxy/testdata/node (as .ci/run does)", pkg)
	}
	return node, dir
}

// TestH2WebSocketNode: Node's own http2 client sends the extended
// CONNECTs (it waits for our SETTINGS to allow them) and npm ws speaks RFC
// 6455 over the streams, 20 sessions on one connection, h2c and TLS, while
// the backends are drained in turn again and again; the script checks
// every echo arrives once and in order.
func TestH2WebSocketNode(t *testing.T) {
	node, dir := nodeDir(t, "ws")
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) {
			const clients, messages = 20, 500
			sd := sockDir(t)
			seen := newWSSeen()
			a := newTestBackend(t, sd, "a", h2wsEcho("a", seen))
			b := newTestBackend(t, sd, "b", h2wsEcho("b", seen))
			cfg := Config{Backends: []string{a.addr, b.addr}}
			var px *Proxy
			var base string
			if mode == "tls" {
				cfg.TLS, _ = selfSigned(t)
				addr, _, p := startTLSProxy(t, cfg)
				px, base = p, "https://"+addr
			} else {
				r := startProxy(t, cfg)
				px, base = r.p, r.url
			}
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			js := startScript(t, ctx, node, filepath.Join(dir, "h2client.js"), base+"/ws", fmt.Sprint(clients), fmt.Sprint(messages))
			waitFor(t, "node's sessions", js.poll(func() bool { return px.Status().WebSocket.Protocols["h2"] == int64(clients) }))
			cur, other := a, b
			drains := 0
			for !js.ended {
				if err := px.Resume(other.addr); err != nil {
					t.Fatal(err)
				}
				if res, err := px.Drain(ctx, cur.addr, 10*time.Second); err != nil || !res.Drained {
					t.Errorf("drain %s: %+v, %v", cur.addr, res, err)
				}
				drains++
				cur, other = other, cur
				// Some messages on each backend before the next drain.
				before := px.ws.Stats().MessagesToBackend
				waitFor(t, "messages between drains", js.poll(func() bool { return px.ws.Stats().MessagesToBackend >= before+300 }))
			}
			var res struct {
				Clients, Messages, OK, Mismatched int
				Closes, Protocols, Extensions     map[string]int
				Errors                            []string
			}
			if err := json.Unmarshal(js.out.Bytes(), &res); err != nil {
				t.Fatalf("node client: %v; output %q, stderr %q (exit %v)", err, js.out.String(), js.errb.String(), js.err)
			}
			if js.err != nil || res.OK != clients || res.Mismatched != 0 {
				t.Fatalf("node client: %d/%d sessions ok, %d mismatched, closes %v, errors %v (exit %v, stderr %q)",
					res.OK, clients, res.Mismatched, res.Closes, res.Errors, js.err, js.errb.String())
			}
			if res.Protocols["chat"] != clients {
				t.Errorf("subprotocols the clients got: %v; want chat (the backend's choice) for all", res.Protocols)
			}
			for ext := range res.Extensions {
				if !strings.Contains(ext, "permessage-deflate") {
					t.Errorf("extensions the clients got: %v; want permessage-deflate (zd-queue's own)", res.Extensions)
				}
			}
			st := px.ws.Stats()
			if st.Moved == 0 || drains < 2 {
				t.Errorf("%d drains moved %d sessions; want several", drains, st.Moved)
			}
			t.Logf("node http2 + ws, %s: %d sessions x %d messages ok through %d drains (%d session moves), closes %v",
				mode, clients, messages, drains, st.Moved, res.Closes)
		})
	}
}

// chromiumPage opens a WebSocket to the page's own origin and sends
// numbered messages (4 in flight) until it has COUNT echoes and Go says
// stop (a GET of /stop answers "yes"), then closes with 1000 once every
// echo came, and sets
// window.zdResult: how many echoes came, the first mismatch, the close
// code.
const chromiumPage = `<!doctype html><meta charset=utf-8><title>zd h2 ws</title><script>
const want = COUNT;
const ws = new WebSocket('wss://' + location.host + '/ws', ['chat']);
let sent = 0, got = 0, bad = '', stopping = false, asking = false;
function send() {
  while (!stopping && sent - got < 4) ws.send('m' + (sent++) + (sent % 10 === 1 ? ' ' + 'y'.repeat(300) : ''));
}
async function ask() {
  asking = true;
  const r = await fetch('/stop');
  stopping = stopping || (await r.text()) === 'yes';
  asking = false;
  if (stopping && got === sent) ws.close(1000, 'done');
}
ws.onopen = send;
ws.onmessage = (e) => {
  const w = 'echo m' + got;
  if (!(e.data.startsWith(w) && (e.data.length === w.length || e.data[w.length] === ' ')) && !bad) bad = 'echo ' + got + ' = ' + e.data.slice(0, 40);
  got++;
  if (stopping) {
    if (got === sent) ws.close(1000, 'done');
    return;
  }
  if (got >= want && got % 20 === 0 && !asking) ask();
  if (got % 40 === 0) setTimeout(send, 5); else send();
};
ws.onclose = (e) => { window.zdResult = { got, sent, bad, code: e.code, protocol: ws.protocol, extensions: ws.extensions }; };
</script>`

// TestH2WebSocketChromium: headless Chromium (playwright-core) loads a
// page over h2 from zd-queue; the page's new WebSocket('wss://...') goes
// as RFC 8441 on that same connection (Chromium does so when the server
// advertises SETTINGS_ENABLE_CONNECT_PROTOCOL there). zd-queue sees one
// session of transport h2, and it stays open through backend drains with
// every message echoed once and in order.
func TestH2WebSocketChromium(t *testing.T) {
	node, dir := nodeDir(t, "playwright-core")
	const exe = "/usr/bin/chromium"
	if _, err := os.Stat(exe); err != nil {
		t.Skip("chromium not found at /usr/bin/chromium: install Debian's chromium (as .ci/run does)")
	}
	const count = 300
	sd := sockDir(t)
	seen := newWSSeen()
	var stop atomic.Bool
	page := strings.Replace(chromiumPage, "COUNT", fmt.Sprint(count), 1)
	h := func(name string) http.HandlerFunc {
		ws := h2wsEcho(name, seen)
		return func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/":
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, page)
			case "/stop":
				if stop.Load() {
					io.WriteString(w, "yes")
				} else {
					io.WriteString(w, "no")
				}
			case "/ws":
				ws(w, r)
			default:
				http.NotFound(w, r)
			}
		}
	}
	a := newTestBackend(t, sd, "a", h("a"))
	b := newTestBackend(t, sd, "b", h("b"))
	cfg := Config{Backends: []string{a.addr, b.addr}}
	cfg.TLS, _ = selfSigned(t)
	addr, _, px := startTLSProxy(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	js := startScript(t, ctx, node, filepath.Join(dir, "chromium.js"), "https://"+addr+"/", exe, "120000")
	// The page's session, seen from zd-queue: transport h2.
	waitFor(t, "Chromium's WebSocket session", js.poll(func() bool { return px.ws.Sessions("") == 1 }))
	if got := px.Status().WebSocket.Protocols; !js.ended && got["h2"] != 1 {
		t.Errorf("Chromium's session counts as %v; want h2 (RFC 8441 on the page's connection)", got)
	}
	// Both backends were routable when the page opened its session, so it
	// may be on either: drain b first (a move if it was there), so that
	// every drain below moves it.
	if res, err := px.Drain(ctx, b.addr, 10*time.Second); err != nil || !res.Drained {
		t.Fatalf("drain %s: %+v, %v", b.addr, res, err)
	}
	cur, other := a, b
	drains := 0
	for ; drains < 6 && !js.ended; drains++ {
		before := px.ws.Stats().MessagesToBackend
		waitFor(t, "messages between drains", js.poll(func() bool { return px.ws.Stats().MessagesToBackend >= before+30 }))
		if js.ended {
			break
		}
		if err := px.Resume(other.addr); err != nil {
			t.Fatal(err)
		}
		if res, err := px.Drain(ctx, cur.addr, 10*time.Second); err != nil || !res.Drained {
			t.Errorf("drain %s: %+v, %v", cur.addr, res, err)
		}
		cur, other = other, cur
	}
	stop.Store(true)
	js.wait(t, 140*time.Second)
	var res struct {
		Status               int
		PageProtocol         string
		Got, Sent, Code      int
		Bad, Protocol, Error string
		Extensions           string
	}
	if err := json.Unmarshal(js.out.Bytes(), &res); err != nil || js.err != nil || res.Error != "" {
		t.Fatalf("chromium.js: %v, %+v (exit %v); output %q, stderr %q", err, res, js.err, js.out.String(), js.errb.String())
	}
	if res.PageProtocol != "h2" {
		t.Errorf("the page came over %q; want h2", res.PageProtocol)
	}
	if res.Bad != "" || res.Got != res.Sent || res.Got < count || res.Code != 1000 {
		t.Errorf("page: %d echoes of %d sent (want at least %d, all), mismatch %q, close %d (want 1000)", res.Got, res.Sent, count, res.Bad, res.Code)
	}
	if res.Protocol != "chat" || !strings.Contains(res.Extensions, "permessage-deflate") {
		t.Errorf("page: subprotocol %q, extensions %q; want chat and permessage-deflate", res.Protocol, res.Extensions)
	}
	st := px.ws.Stats()
	if drains < 6 || st.Moved < 6 {
		t.Errorf("%d drains moved the session %d times; want 6", drains, st.Moved)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for id, got := range seen.got {
		for m, g := range got {
			if want := fmt.Sprintf("m%d", m); !strings.HasPrefix(g, want) || (len(g) > len(want) && g[len(want)] != ' ') {
				t.Errorf("session %s: backends read message %d as %.40q; want %s", id, m, g, want)
				break
			}
		}
	}
	t.Logf("chromium: page over %s, %d messages each way through %d drains (%d moves), close %d, %s, %s",
		res.PageProtocol, res.Got, drains, st.Moved, res.Code, res.Protocol, res.Extensions)
}

// TestH2WebSocketStalledSessionKeepsConnection: a session whose backend
// stops reading holds at most its own stream's window: another session on
// the same HTTP/2 connection keeps going (the connection's window, 1 MiB
// like a stream's, would otherwise be used up by the stalled one).
func TestH2WebSocketStalledSessionKeepsConnection(t *testing.T) {
	dir := sockDir(t)
	release := make(chan struct{})
	defer close(release)
	echo := h2wsEcho("a", newWSSeen())
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stall" {
			echo(w, r)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		<-release // reads nothing
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := h2wsTransport(t, nil)
	stalled, err := dialH2WS(ctx, tr, px.url+"/stall")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.out.CloseWithError(errors.New("test over"))
	// 4 MiB at the stalled session: the backend's socket buffers, the
	// relay and the stream's window take some, the rest waits in the
	// client.
	var handed atomic.Int64 // bytes the stalled client's transport took
	go func() {
		chunk := bytes.Repeat([]byte("s"), 64<<10)
		for range 64 {
			if stalled.send(2, chunk, false) != nil {
				return
			}
			handed.Add(int64(len(chunk)))
		}
	}()
	// Sent but not relayed: at least 900 KiB are then unread in zd-queue
	// (less one message the relay is reading, one the transport holds).
	waitFor(t, "the stalled session to fill its window", func() bool {
		return handed.Load()-int64(px.p.ws.Stats().BytesToBackend) >= 900<<10
	})
	live, err := dialH2WS(ctx, tr, px.url+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	for m := range 100 {
		// 3 MiB in all, more than the connection's window; each under the
		// backend's 32 KiB message limit.
		msg := fmt.Sprintf("m%d %s", m, strings.Repeat("z", 30<<10))
		if err := live.send(2, []byte(msg), false); err != nil {
			t.Fatalf("send %d beside a stalled session: %v", m, err)
		}
		if _, got, err := live.recv(); err != nil || string(got) != "echo "+msg {
			t.Fatalf("echo %d beside a stalled session: %.20q, %v", m, got, err)
		}
	}
}

// TestH2WebSocketWriteTimeout: a client that opens no window for what its
// session sends (it never sends WINDOW_UPDATE) loses the session after
// WSWriteTimeout, counted 1008 write-timeout: the write blocked on the
// window is cut and the stream reset (CANCEL); the connection serves on.
func TestH2WebSocketWriteTimeout(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "plain")
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		msg := bytes.Repeat([]byte("w"), 16<<10)
		for range 512 { // 8 MiB, far more than the client's 64 KiB windows
			if c.Write(context.Background(), websocket.MessageBinary, msg) != nil {
				return
			}
		}
	})
	px := startProxy(t, Config{Backends: []string{be.addr}, WSWriteTimeout: 500 * time.Millisecond})
	r := dialRawH2(t, px.addr)
	start := time.Now()
	r.openWS(t, 1, px.addr)
	if got := r.untilReset(t, 1); got != http2.ErrCodeCancel {
		t.Errorf("a session whose client opens no window: reset %v; want CANCEL", got)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("the session was cut after %v; want about WSWriteTimeout (0.5 s) and 1 s for the blocked write", d)
	}
	series := `zdqueue_ws_closes_total{code="1008",reason="` + wsrelay.ReasonWriteTimeout + `"}`
	waitFor(t, series+" to be 1", func() bool { return metricValue(t, px.p, series) == 1 })
	// The connection's window the session used is the client's to give.
	r.fr.WriteWindowUpdate(0, 1<<20)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, EndStream: true, BlockFragment: r.block(rawGET...)})
	if got := r.answer(t, 3); got != "200 on 3" {
		t.Errorf("GET after the cut session: %s", got)
	}
}

// script is a program (a Node script) running beside a test, which drives
// zd-queue meanwhile: its output, and whether and how it ended.
type script struct {
	name      string
	out, errb bytes.Buffer
	exited    chan error
	ended     bool  // it ended (seen by poll or wait)
	err       error // how: its exit error
}

// startScript starts prog with args under ctx.
func startScript(t *testing.T, ctx context.Context, prog string, args ...string) *script {
	t.Helper()
	js := &script{name: filepath.Base(args[0]), exited: make(chan error, 1)}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &js.out, &js.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { js.exited <- cmd.Wait() }()
	return js
}

// poll wraps cond for waitFor so that the wait also ends when the script
// does (ended then says so).
func (js *script) poll(cond func() bool) func() bool {
	return func() bool {
		if js.ended {
			return true
		}
		select {
		case js.err = <-js.exited:
			js.ended = true
			return true
		default:
		}
		return cond()
	}
}

// wait waits, at most d, for the script to end.
func (js *script) wait(t *testing.T, d time.Duration) {
	t.Helper()
	if !js.ended {
		js.err = within(t, js.exited, d, js.name+" did not end")
		js.ended = true
	}
}
