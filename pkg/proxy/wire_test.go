package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// FuzzWriteRequest checks that what writeRequest sends parses back, as a
// backend would, into the same request: method, URI, Host, the end-to-end
// headers, X-Forwarded-*, body and trailers, whatever the body's framing.
func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.test", "X-A", "1", []byte(nil), int8(0))
	f.Add("POST", "/up", "h", "Content-Type", "text/plain", []byte("hello"), int8(1))
	f.Add("PUT", "/%2F", "h:8080", "X-Long", strings.Repeat("v", 300), bytes.Repeat([]byte("x"), 70000), int8(-1))
	f.Add("PATCH", "/t", "h", "Te", "trailers", []byte("chunky"), int8(2))
	f.Add("GET", "/", "h", "X-Forwarded-For", "10.0.0.1", []byte(nil), int8(0))
	f.Add("GET", "/", "h", "Connection", "X-Secret", []byte(nil), int8(0))
	f.Fuzz(func(t *testing.T, method, uri, host, hk, hv string, body []byte, framing int8) {
		in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + uri + " HTTP/1.1\r\nHost: " + host + "\r\n" + hk + ": " + hv + "\r\nX-Secret: s\r\n\r\n")))
		if err != nil {
			return // only requests a server would accept reach the proxy
		}
		if u, err := url.ParseRequestURI(in.RequestURI); err != nil || u.Opaque != "" {
			return
		}
		in.RemoteAddr = "192.0.2.7:4321"
		rb := &reqBody{size: -1}
		switch {
		case framing == 0 || len(body) == 0 && framing > 0:
			body = nil
		case framing > 0:
			rb.held = body
		default:
			rb.src = io.NopCloser(bytes.NewReader(body))
			if framing < -1 {
				in.Trailer = http.Header{"X-Sum": {"42"}}
			}
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeRequest(w, in, backendURI(in), rb); err != nil {
			t.Fatalf("writeRequest: %v", err)
		}
		w.Flush()
		got, err := http.ReadRequest(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("backend cannot parse what was sent: %v\n%q", err, buf.String())
		}
		if got.Method != in.Method || got.RequestURI != backendURI(in) || got.Host != in.Host {
			t.Fatalf("sent %s %s (Host %s), backend saw %s %s (Host %s)", in.Method, backendURI(in), in.Host, got.Method, got.RequestURI, got.Host)
		}
		conn := connectionListed(in.Header["Connection"])
		for k, vv := range in.Header {
			want := strings.Join(vv, ",")
			switch {
			case skipForward(k) || conn[k]:
				if k == "X-Forwarded-For" {
					want = strings.Join(append(vv, "192.0.2.7"), ", ")
				} else if k == "Te" && httpguts.HeaderValuesContainsToken(vv, "trailers") {
					want = "trailers"
				} else {
					continue
				}
			case k == "User-Agent" && want == "":
				continue
			}
			if strings.Join(got.Header[k], ",") != want {
				t.Fatalf("header %s: sent %q, backend saw %q", k, want, got.Header[k])
			}
		}
		if got.Header.Get("X-Forwarded-Proto") != "http" || (in.Host != "" && got.Header.Get("X-Forwarded-Host") != in.Host) {
			t.Fatalf("forwarded headers: %v", got.Header)
		}
		if _, ok := in.Header["X-Forwarded-For"]; !ok && got.Header.Get("X-Forwarded-For") != "192.0.2.7" {
			t.Fatalf("X-Forwarded-For %q; want the client's address", got.Header["X-Forwarded-For"])
		}
		if conn["X-Secret"] && got.Header.Get("X-Secret") != "" {
			t.Fatalf("a field named by Connection was forwarded")
		}
		gb, err := io.ReadAll(got.Body)
		if err != nil || !bytes.Equal(gb, body) {
			t.Fatalf("body: sent %d bytes, backend read %d (%v)", len(body), len(gb), err)
		}
		if in.Trailer != nil && len(body) > 0 && got.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("trailer lost: %v", got.Trailer)
		}
	})
}

func TestBconnBoundKeepsRecentDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	bc := &bconn{c: a}
	now := time.Now()
	d := 64 * time.Second
	bc.bound(now, d)
	if !bc.dl.Equal(now.Add(d)) {
		t.Fatalf("first bound: deadline %v; want %v", bc.dl, now.Add(d))
	}
	bc.bound(now.Add(500*time.Millisecond), d)
	if !bc.dl.Equal(now.Add(d)) {
		t.Errorf("bound within d/64: deadline moved to %v", bc.dl)
	}
	later := now.Add(2 * time.Second)
	bc.bound(later, d)
	if !bc.dl.Equal(later.Add(d)) {
		t.Errorf("bound after d/64: deadline %v; want %v", bc.dl, later.Add(d))
	}
	bc.unbound()
	bc.bound(later, d)
	if !bc.dl.Equal(later.Add(d)) {
		t.Errorf("bound after unbound: deadline %v; want %v", bc.dl, later.Add(d))
	}
	// The deadline really is on the connection: a read past it fails.
	bc.bound(time.Now().Add(-d+10*time.Millisecond), d)
	if _, err := a.Read(make([]byte, 1)); err == nil || !os.IsTimeout(err) {
		t.Errorf("read after the deadline: %v; want a timeout", err)
	}
}
