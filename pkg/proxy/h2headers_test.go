package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Malformed requests get RST_STREAM(PROTOCOL_ERROR) on their stream only;
// the connection and its other streams carry on.
func TestH2MalformedStream(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, h2Preface)
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	headers := func(id uint32, fields ...string) {
		buf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true})
	}
	base := []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}
	headers(1, append(base, "connection", "keep-alive")...)        // connection-specific field
	headers(3, ":method", "GET", ":scheme", "http", ":path", "")   // empty :path
	headers(5, append(base, "te", "gzip")...)                      // TE other than trailers
	headers(7, append(base, ":path", "/again")...)                 // duplicate pseudo-header
	headers(9, append(base, "accept", "*/*", ":method", "GET")...) // pseudo-header after a regular field
	headers(11, append(base, "x-a", "b\x00c")...)                  // NUL in a value
	headers(13, append(base, "X-Upper", "a")...)                   // upper case name
	headers(15, base...)                                           // fine
	resets := map[uint32]http2.ErrCode{}
	status := ""
	for status == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v (resets so far %v)", err, resets)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			resets[f.StreamID] = f.ErrCode
		case *http2.MetaHeadersFrame:
			if f.StreamID == 15 {
				status = f.PseudoValue("status")
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v: a malformed stream must not end the connection", f.ErrCode)
		}
	}
	for _, id := range []uint32{1, 3, 5, 7, 9, 11, 13} {
		if resets[id] != http2.ErrCodeProtocol {
			t.Errorf("stream %d: reset %v; want PROTOCOL_ERROR", id, resets[id])
		}
	}
	if status != "200" {
		t.Errorf("good stream: status %q", status)
	}
}

// A request's trailers (announced in its Trailer header) reach the
// backend after the body, which the proxy sends chunked.
func TestH2RequestTrailers(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", b, r.Trailer.Get("X-Checksum"))
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	c := h2cClient(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", px.url+"/up", pr)
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() {
		io.WriteString(pw, "part one, ")
		io.WriteString(pw, "part two")
		req.Trailer.Set("X-Checksum", "abc123")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "part one, part two abc123" {
		t.Errorf("backend saw %q; want the body and its trailer", b)
	}
}

// FuzzH2Request feeds header lists, as HPACK would deliver them, to the
// HTTP/2 request builder: it must never panic, and what it accepts must be
// a request the proxy can forward (a method token, an origin-form path or
// OPTIONS *, a valid Host, no connection-specific fields).
func FuzzH2Request(f *testing.F) {
	f.Add(":method\x00GET\n:scheme\x00http\n:authority\x00a\n:path\x00/x?y\nuser-agent\x00f\n", true)
	f.Add(":method\x00POST\n:scheme\x00http\n:path\x00/%2F\ncontent-length\x003\ntrailer\x00x-sum\n", false)
	f.Add(":method\x00OPTIONS\n:scheme\x00http\n:path\x00*\nhost\x00b:1\n", true)
	f.Add(":method\x00GET\n:scheme\x00http\n:path\x00/\nconnection\x00close\n", true)
	f.Add(":method\x00CONNECT\n:authority\x00a:443\n", false)
	f.Add(":method\x00CONNECT\n:protocol\x00websocket\n:scheme\x00https\n:authority\x00a\n:path\x00/ws\nsec-websocket-version\x0013\n", false)
	f.Add(":method\x00GET\n:protocol\x00websocket\n:scheme\x00http\n:authority\x00a\n:path\x00/\n", false)
	f.Fuzz(func(t *testing.T, list string, end bool) {
		var fields []hpack.HeaderField
		for _, line := range strings.Split(list, "\n") {
			name, value, ok := strings.Cut(line, "\x00")
			if ok {
				fields = append(fields, hpack.HeaderField{Name: name, Value: value})
			}
		}
		// The fields go through the block's checks as the decoder emits
		// them, then through the request builder.
		c := &h2conn{ctx: context.Background(), remote: "192.0.2.1:9"}
		c.blk.max = 16 << 10
		c.blk.start(1, end)
		for _, hf := range fields {
			c.blk.emit(hf)
		}
		if c.blk.invalid != nil || c.blk.truncated {
			return
		}
		checkH2Request(t, c, 1, end)
	})
}

// checkH2Request builds the request of the block in c.blk, if it makes
// one, and checks that it is one a backend may get.
func checkH2Request(t *testing.T, c *h2conn, id uint32, end bool) {
	t.Helper()
	st := &h2stream{c: c, id: id, declared: -1}
	st.bcond.L = &st.bmu
	r, err := c.newRequest(st, &c.blk)
	if err != nil {
		return
	}
	if r.Method == http.MethodConnect {
		// Only an extended CONNECT (RFC 8441) is taken, never forwarded
		// as a request: handle gives it to the WebSocket relay.
		p := r.Header[":protocol"]
		if len(p) != 1 || !validToken([]byte(p[0])) || end || r.Host == "" || !httpguts.ValidHostHeader(r.Host) ||
			!strings.HasPrefix(r.RequestURI, "/") || r.ContentLength >= 0 {
			t.Fatalf("accepted a CONNECT that is no extended CONNECT: protocol %q, host %q, path %q, end %v, length %d",
				p, r.Host, r.RequestURI, end, r.ContentLength)
		}
		return
	}
	if _, ok := r.Header[":protocol"]; ok {
		t.Fatalf("accepted :protocol on %s", r.Method)
	}
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			t.Fatalf("accepted field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("accepted %s value %q", k, v)
			}
		}
		if isH2ConnectionField(k) {
			t.Fatalf("accepted connection-specific field %s", k)
		}
	}
	if !validToken([]byte(r.Method)) {
		t.Fatalf("accepted method %q", r.Method)
	}
	if r.RequestURI != "*" && !strings.HasPrefix(r.RequestURI, "/") {
		t.Fatalf("accepted path %q", r.RequestURI)
	}
	if r.Host != "" && !httpguts.ValidHostHeader(r.Host) {
		t.Fatalf("accepted host %q", r.Host)
	}
	if end && r.Body != http.NoBody {
		t.Fatalf("END_STREAM on the headers but a body to read")
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	rb := &reqBody{size: 0}
	if err := writeRequest(w, r, backendURI(r), rb); err != nil {
		return // a field value the backend request refuses is an error, not a panic
	}
	w.Flush()
	if _, err := http.ReadRequest(bufio.NewReader(&buf)); err != nil {
		t.Fatalf("backend cannot parse the forwarded request: %v\n%q", err, buf.String())
	}
}

// FuzzH2HeaderBlock feeds arbitrary bytes as HPACK header blocks, each in
// two fragments, through the read loop's decoding and checks and the
// request builder, twice (the second block decodes against the dynamic
// table the first left): a connection error, a malformed or oversized
// block, or a request a backend may get; never a panic.
func FuzzH2HeaderBlock(f *testing.F) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, fields := range [][]string{
		{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/x?y", "user-agent", "f", "accept", "*/*"},
		{":method", "POST", ":scheme", "https", ":path", "/%2F", "content-length", "3", "trailer", "x-sum", "cookie", "a=b"},
		{":method", "GET", ":scheme", "http", ":path", "/", "x-a", strings.Repeat("v", 300)},
	} {
		buf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		f.Add(bytes.Clone(buf.Bytes()), uint16(5), true)
	}
	f.Add([]byte{0x3f, 0xe1, 0x1f, 0x82, 0x86, 0x84, 0x41, 0x01, 'a'}, uint16(1), false) // a table size update, then indexed fields
	f.Fuzz(func(t *testing.T, block []byte, cut uint16, end bool) {
		c := &h2conn{ctx: context.Background(), remote: "192.0.2.1:9"}
		c.blk.max = 4 << 10
		c.hdec = hpack.NewDecoder(4096, c.blk.emit)
		c.hdec.SetMaxStringLength(int(c.blk.max))
		at := int(cut) % (len(block) + 1)
		for id := uint32(1); id <= 3; id += 2 {
			c.blk.start(id, end)
			if c.blk.decode(c.hdec, block[:at], false) != nil || c.blk.decode(c.hdec, block[at:], true) != nil {
				return // the connection would end here
			}
			if c.blk.invalid == nil && !c.blk.truncated {
				checkH2Request(t, c, id, end)
			}
		}
	})
}

// rawH2 is a hand-driven HTTP/2 client connection, for sending what a
// well-behaved client library will not.
type rawH2 struct {
	conn net.Conn
	fr   *http2.Framer
	buf  bytes.Buffer
	enc  *hpack.Encoder
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, h2Preface)
	r := &rawH2{conn: conn, fr: http2.NewFramer(conn, conn)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.buf)
	r.fr.WriteSettings()
	return r
}

// block encodes name, value pairs as a header block.
func (r *rawH2) block(fields ...string) []byte {
	r.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(r.buf.Bytes())
}

// until reads frames until the response headers of every stream in ids
// (they answer in any order), a GOAWAY or a read error, and tells what
// came: "RST 3 PROTOCOL_ERROR", "200 on 5", "GOAWAY PROTOCOL_ERROR".
func (r *rawH2) until(t *testing.T, ids ...uint32) []string {
	t.Helper()
	var got []string
	for range 100 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return append(got, "read error: "+err.Error())
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			got = append(got, fmt.Sprintf("RST %d %v", f.StreamID, f.ErrCode))
		case *http2.GoAwayFrame:
			return append(got, fmt.Sprintf("GOAWAY %v", f.ErrCode))
		case *http2.MetaHeadersFrame:
			got = append(got, fmt.Sprintf("%s on %d", f.PseudoValue("status"), f.StreamID))
			if ids = slices.DeleteFunc(ids, func(id uint32) bool { return id == f.StreamID }); len(ids) == 0 {
				return got
			}
		}
	}
	return got
}

var rawGET = []string{":method", "GET", ":scheme", "http", ":authority", "x", ":path", "/"}

// A header block over MaxHeaderBytes, even three times the limit, gets 431 on its stream; the connection goes on.
func TestH2OversizeHeaderBlock(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, MaxHeaderBytes: 16 << 10})
	r := dialRawH2(t, px.addr)
	big := strings.Repeat("|", 16<<10) // '|' takes more than 8 bits in Huffman code: sent raw
	// In frames of the 16 KiB the server reads.
	block := r.block(append(rawGET, "x-a", big, "x-b", big, "x-c", big)...)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16384], EndStream: true})
	for block = block[16384:]; len(block) > 16384; block = block[16384:] {
		r.fr.WriteContinuation(1, false, block[:16384])
	}
	r.fr.WriteContinuation(1, true, block)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 1, 3)
	slices.Sort(got)
	if !slices.Equal(got, []string{"200 on 3", "431 on 1"}) {
		t.Errorf("got %v; want 431 on stream 1 and 200 on stream 3", got)
	}
}

// HEADERS whose padding is as long as its payload is a connection error
// (RFC 9113 section 6.2): carrying on would decode its CONTINUATION out of
// step with the client's HPACK table.
func TestH2BadPaddingEndsConnection(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)
	frag := r.block(append(rawGET, "x-first", "one")...)
	r.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndStream, 1, append([]byte{200}, frag[:4]...))
	r.fr.WriteContinuation(1, true, frag[4:])
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	if got := r.until(t, 3); !slices.Equal(got, []string{"GOAWAY PROTOCOL_ERROR"}) {
		t.Errorf("got %v; want GOAWAY(PROTOCOL_ERROR)", got)
	}
	if n := be.hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests; want none", n)
	}
}

// Trailers with a pseudo-header, or an invalid field, make the request
// malformed: its stream is reset, the connection goes on.
func TestH2MalformedTrailers(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	px := startProxy(t, Config{Backends: []string{be.addr}})
	r := dialRawH2(t, px.addr)
	for i, trailer := range [][]string{{":path", "/evil", "x-t", "v"}, {"X-T", "v"}} {
		id := uint32(2*i + 1) // streams open in increasing order
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "trailer", "x-t"), EndHeaders: true})
		r.fr.WriteData(id, false, []byte("abc"))
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(trailer...), EndStream: true, EndHeaders: true})
	}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 5)
	for _, want := range []string{"RST 1 PROTOCOL_ERROR", "RST 3 PROTOCOL_ERROR", "200 on 5"} {
		if !slices.Contains(got, want) {
			t.Errorf("got %v; want %q among them", got, want)
		}
	}
	for _, s := range got {
		if strings.HasSuffix(s, " on 1") || strings.HasSuffix(s, " on 3") {
			t.Errorf("got %v: a malformed request was answered", got)
		}
	}
}
