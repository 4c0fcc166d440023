package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzReadResponseFast checks readResponseFast against http.ReadResponse:
// whatever the fast path accepts, net/http accepts too, with the same
// status, headers, length, keep-alive decision and body; whatever it
// declines is left unread for net/http.
func FuzzReadResponseFast(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-lower: v \t\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &http.Request{Method: "GET"}
		br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
		fast, ok := readResponseFast(&bconn{br: br}, req)
		if !ok {
			// Nothing consumed: net/http sees the whole input (Peek only
			// buffers).
			if br.Buffered() != min(len(data), 16<<10) && len(data) > 0 {
				t.Fatalf("declined but consumed: %d of %d bytes buffered", br.Buffered(), len(data))
			}
			return
		}
		fastBody, fastErr := io.ReadAll(fast.Body)
		slow, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), req)
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v): %q", err, data)
		}
		slowBody, slowErr := io.ReadAll(slow.Body)
		if fast.StatusCode != slow.StatusCode || fast.ContentLength != slow.ContentLength || fast.Close != slow.Close {
			t.Fatalf("status/length/close: fast %d %d %v, net/http %d %d %v for %q",
				fast.StatusCode, fast.ContentLength, fast.Close, slow.StatusCode, slow.ContentLength, slow.Close, data)
		}
		// net/http drops Connection once it has decided to close; the
		// proxy never forwards it anyway.
		fh, sh := fast.Header.Clone(), slow.Header.Clone()
		delete(fh, "Connection")
		delete(sh, "Connection")
		if len(fh) == 0 {
			fh = http.Header{}
		}
		if len(sh) == 0 {
			sh = http.Header{}
		}
		if !reflect.DeepEqual(fh, sh) {
			t.Fatalf("headers: fast %v, net/http %v for %q", fh, sh, data)
		}
		if !bytes.Equal(fastBody, slowBody) || (fastErr == nil) != (slowErr == nil) {
			t.Fatalf("body: fast %q (%v), net/http %q (%v)", fastBody, fastErr, slowBody, slowErr)
		}
	})
}

func TestReadResponseFastLeavesTheRest(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	req := &http.Request{Method: "GET"}
	for i, want := range []int{200, 201} {
		resp, ok := readResponseFast(&bconn{br: br}, req)
		if !ok {
			t.Fatalf("response %d: declined", i)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("response %d: %d %q %v; want %d", i, resp.StatusCode, b, err, want)
		}
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes left buffered", br.Buffered())
	}
	if _, ok := readResponseFast(&bconn{br: bufio.NewReader(strings.NewReader(in))}, &http.Request{Method: "HEAD"}); ok {
		t.Error("HEAD: fast path taken; the body length rules differ")
	}
}
