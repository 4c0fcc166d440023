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
)

// FuzzWriteRequest checks that what writeRequest sends parses back, as a
// backend would, into the same request: method, URI, Host, headers, body
// and trailers, whatever the body's framing.
func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.test", "X-A", "1", []byte(nil), int8(0))
	f.Add("POST", "/up", "h", "Content-Type", "text/plain", []byte("hello"), int8(1))
	f.Add("PUT", "/%2F", "h:8080", "X-Long", strings.Repeat("v", 300), bytes.Repeat([]byte("x"), 70000), int8(-1))
	f.Add("PATCH", "/t", "h", "Te", "trailers", []byte("chunky"), int8(2))
	f.Fuzz(func(t *testing.T, method, uri, host, hk, hv string, body []byte, framing int8) {
		in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + uri + " HTTP/1.1\r\nHost: " + host + "\r\n" + hk + ": " + hv + "\r\n\r\n")))
		if err != nil {
			return // only requests a server would accept reach the proxy
		}
		u, err := url.ParseRequestURI(in.RequestURI)
		if err != nil || u.Opaque != "" {
			return
		}
		out := &http.Request{Method: in.Method, URL: &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
			Host: in.Host, Header: http.Header{}}
		if out.URL.Path == "" {
			out.URL.Path = "/"
		}
		copyRequestHeader(out.Header, in.Header)
		switch {
		case framing == 0 || len(body) == 0 && framing > 0:
			body = nil
		case framing > 0:
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		default:
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = -1
			if framing < -1 {
				out.Trailer = http.Header{"X-Sum": {"42"}}
			}
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := writeRequest(w, out); err != nil {
			t.Fatalf("writeRequest: %v", err)
		}
		w.Flush()
		got, err := http.ReadRequest(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("backend cannot parse what was sent: %v\n%q", err, buf.String())
		}
		if got.Method != out.Method || got.RequestURI != out.URL.RequestURI() || got.Host != out.Host {
			t.Fatalf("sent %s %s (Host %s), backend saw %s %s (Host %s)", out.Method, out.URL.RequestURI(), out.Host, got.Method, got.RequestURI, got.Host)
		}
		for k, vv := range out.Header {
			if strings.Join(got.Header[k], ",") != strings.Join(vv, ",") {
				t.Fatalf("header %s: sent %q, backend saw %q", k, vv, got.Header[k])
			}
		}
		gb, err := io.ReadAll(got.Body)
		if err != nil || !bytes.Equal(gb, body) {
			t.Fatalf("body: sent %d bytes, backend read %d (%v)", len(body), len(gb), err)
		}
		if out.Trailer != nil && got.Trailer.Get("X-Sum") != "42" {
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
