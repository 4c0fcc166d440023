package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingBackend is an HTTP/1.1 backend on TCP that records every byte it
// receives, in arrival order, and answers each request it can read with
// 200 "seen TARGET". It parses with net/http's reader only to know where a
// request ends; what a test compares is the raw bytes.
type recordingBackend struct {
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	mu    sync.Mutex
	got   bytes.Buffer
	conns map[net.Conn]bool
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &recordingBackend{ln: ln, addr: "tcp://" + ln.Addr().String(), conns: map[net.Conn]bool{}}
	rb.wg.Add(1)
	go func() {
		defer rb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.mu.Lock()
			rb.conns[c] = true
			rb.mu.Unlock()
			rb.wg.Add(1)
			go func() {
				defer rb.wg.Done()
				rb.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rb.mu.Lock()
		for c := range rb.conns {
			c.Close()
		}
		rb.mu.Unlock()
		rb.wg.Wait()
	})
	return rb
}

// Write records what the connection reads (the TeeReader's writer).
func (rb *recordingBackend) Write(b []byte) (int, error) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.got.Write(b)
}

func (rb *recordingBackend) serve(c net.Conn) {
	defer func() {
		c.Close()
		rb.mu.Lock()
		delete(rb.conns, c)
		rb.mu.Unlock()
	}()
	br := bufio.NewReader(io.TeeReader(c, rb))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		body := "seen " + req.RequestURI + "\n"
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
			return
		}
	}
}

// take returns what was recorded since the last take.
func (rb *recordingBackend) take() string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	s := rb.got.String()
	rb.got.Reset()
	return s
}

func (rb *recordingBackend) has(s string) bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return strings.Contains(rb.got.String(), s)
}

// fwd is the request zd-queue sends a backend for a client request from
// 127.0.0.1 to host: the request line, Host, the fields given (each ending
// in CRLF), the X-Forwarded fields, the framing fields given, the empty
// line and the body.
func fwd(line, host, fields, framing, body string) string {
	return line + "\r\nHost: " + host + "\r\n" + fields +
		"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: " + host + "\r\n" +
		framing + "\r\n" + body
}

// The follow-up request sent on a connection that must stay usable, and
// what the backend receives for it.
const (
	aliveReq = "GET /alive HTTP/1.1\r\nHost: x\r\n\r\n"
)

var aliveFwd = fwd("GET /alive HTTP/1.1", "x", "", "", "")

// hostileCase is one request-smuggling or malformed-input shape.
type hostileCase struct {
	name string
	req  string // bytes the client sends (in one write)
	// want is the statuses of the answers the client reads, in order;
	// then the connection is closed by zd-queue (closed), or still usable
	// for another request (not closed).
	want    []int
	closed  bool
	backend string // every byte the backend receives, exactly
	bad     string // the zdqueue_bad_input_total kind counted once; "" for none
}

// hostileCases is the table: what RFC 9112 requires or allows, decided as
// HAProxy and nginx do where it leaves a choice (see docs/architecture.md,
// "HTTP/1.1 input zd-queue refuses").
var hostileCases = []hostileCase{
	// Well-formed shapes: passed on, re-framed, the connection stays.
	{name: "get", req: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200},
		backend: fwd("GET /a HTTP/1.1", "x", "", "", "")},
	{name: "content-length body", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Content-Length: 5\r\n", "hello")},
	{name: "chunked body", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
	{name: "chunked, coding name in capitals", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
	{name: "chunk extension dropped", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0;x\r\n\r\n", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
	{name: "chunk size with leading zeros", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n000\r\n\r\n", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")},
	{name: "pipelined", req: "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200, 200},
		backend: fwd("GET /a HTTP/1.1", "x", "", "", "") + fwd("GET /b HTTP/1.1", "x", "", "", "")},
	{name: "identical content-lengths (one value, RFC 9112 section 6.3)", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", want: []int{200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Content-Length: 5\r\n", "hello")},
	{name: "content-length shorter than what follows: the rest is the next request", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		want:    []int{200, 200},
		backend: fwd("POST /a HTTP/1.1", "x", "", "Content-Length: 2\r\n", "he") + fwd("lloGET /b HTTP/1.1", "x", "", "", "")},
	{name: "bare LF line ends", req: "GET /a HTTP/1.1\nHost: x\n\n", want: []int{200},
		backend: fwd("GET /a HTTP/1.1", "x", "", "", "")},
	{name: "empty line before the request line", req: "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200},
		backend: fwd("GET /a HTTP/1.1", "x", "", "", "")},
	{name: "absolute-form: its authority is the host", req: "GET http://y/abs?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200},
		backend: fwd("GET /abs?q=1 HTTP/1.1", "y", "", "", "")},
	// net/http answers OPTIONS * itself (200, no body); it is not passed on.
	{name: "asterisk-form", req: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", want: []int{200}},
	{name: "HTTP/1.0 closes after the answer", req: "GET /a HTTP/1.0\r\nHost: x\r\n\r\n", want: []int{200}, closed: true,
		backend: fwd("GET /a HTTP/1.1", "x", "", "", "")},

	// Framing that cannot be trusted: answered 400 and closed; nothing
	// reaches the backend (RFC 9112 sections 6.1 and 6.3).
	{name: "content-length and transfer-encoding", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "transfer-encoding and content-length", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "content-length and transfer-encoding identity", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\nabcd",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "content-length and a transfer-encoding with a control byte", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "transfer-encoding in HTTP/1.0", req: "POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "chunked not the final coding", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "chunked twice", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "unknown coding", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "a coding zd-queue does not decode", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{501}, closed: true, bad: "malformed"},
	{name: "space before the colon", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "obs-fold", req: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "obs-fold of transfer-encoding", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "signed content-length", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "negative content-length", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "content-length list", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "different content-lengths", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 4\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "overflowing content-length", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "hex content-length", req: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "bare CR in a value", req: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "NUL in a value", req: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "NUL in a name", req: "GET /a HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "no host", req: "GET /a HTTP/1.1\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "two hosts", req: "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "two spaces in the request line", req: "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n",
		want: []int{400}, closed: true, bad: "malformed"},
	{name: "HTTP/2.0 request line", req: "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
		want: []int{505}, closed: true, bad: "malformed"},

	// Request lines that cannot be HTTP/1.x: the peer speaks something
	// else (or an h2 client sent a bad preface, RFC 9113 section 3.4) and
	// could not read an HTTP/1.1 answer: closed at once, no answer, not
	// after the header timeout.
	{name: "GARBAGE", req: "GARBAGE\r\n\r\n", closed: true, bad: "malformed"},
	{name: "GARBAGE line, head not ended", req: "GARBAGE\r\n", closed: true, bad: "malformed"},
	{name: "no version", req: "GET /\r\n\r\n", closed: true, bad: "malformed"},
	{name: "no version, head not ended", req: "GET /\r\n", closed: true, bad: "malformed"},
	{name: "lower-case version", req: "GET / http/1.1\r\nHost: x\r\n\r\n", closed: true, bad: "malformed"},
	{name: "invalid h2 preface", req: "INVALID CONNECTION PREFACE\r\n\r\n", closed: true, bad: "malformed"},
	{name: "control byte in the target", req: "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", closed: true, bad: "malformed"},
	{name: "NUL in the request line, line not ended", req: "GET /\x00", closed: true, bad: "malformed"},
	{name: "TLS client hello on the cleartext port", req: "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", closed: true, bad: "malformed"},

	// Chunked bodies that cannot be read: the client's error (400,
	// counted as bad input), the connection closed. The backend sees what
	// was decoded before the error, then its connection ends.
	{name: "chunk size overflow", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "chunk size not hex", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "negative chunk size", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "chunk size 0x5", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "overlong chunk extension", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", 8000) + "\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "bare LF after the chunk size", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body"},
	{name: "chunk longer than its size", req: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
		want: []int{400}, closed: true, bad: "body",
		backend: fwd("POST /a HTTP/1.1", "x", "", "Transfer-Encoding: chunked\r\n", "3\r\nhel\r\n")},
}

// TestHostileInput runs the table against a real zd-queue on TCP with a
// backend that records the bytes it receives: what the backend gets, byte
// for byte; what the client gets (statuses; connection closed or still
// usable); and that each refused case is counted once in
// zdqueue_bad_input_total.
func TestHostileInput(t *testing.T) {
	be := newRecordingBackend(t)
	// The header timeout is far beyond the client's wait: an answer that
	// comes only when it runs out fails the case.
	px := startProxy(t, Config{Backends: []string{be.addr}, ReadHeaderTimeout: time.Minute})
	kinds := []string{"malformed", "header_too_large", "timeout", "body", "tls", "h2_protocol"}
	counts := func() map[string]float64 {
		m := map[string]float64{}
		for _, k := range kinds {
			m[k] = max(0, metricValue(t, px.p, `zdqueue_bad_input_total{kind="`+k+`"}`))
		}
		return m
	}
	for i, tc := range hostileCases {
		t.Run(tc.name, func(t *testing.T) {
			before := counts()
			be.take()
			got, closed, err := exchange(px.addr, tc.req, len(tc.want), !tc.closed)
			if err != nil {
				t.Fatalf("%.80q: %v", tc.req, err)
			}
			if !equalInts(got, tc.want) || closed != tc.closed {
				t.Errorf("%.80q: answered %v, closed %v; want %v, closed %v", tc.req, got, closed, tc.want, tc.closed)
			}
			wantBackend := tc.backend
			if !tc.closed {
				wantBackend += aliveFwd
			}
			// A request that follows on its own connection marks the end
			// of what this case may have sent the backend.
			mark := "GET /sync-" + strconv.Itoa(i) + " HTTP/1.1"
			if got, _, err := exchange(px.addr, mark+"\r\nHost: x\r\nConnection: close\r\n\r\n", 1, false); err != nil || !equalInts(got, []int{200}) {
				t.Fatalf("the request after the case: %v, %v", got, err)
			}
			waitFor(t, "the backend to receive the request after the case", func() bool { return be.has(mark) })
			if b, want := be.take(), wantBackend+fwd(mark, "x", "", "", ""); b != want {
				t.Errorf("%.80q: the backend received\n%q\nwant\n%q", tc.req, b, want)
			}
			after := counts()
			for _, k := range kinds {
				want := before[k]
				if k == tc.bad {
					want++
				}
				if after[k] != want {
					t.Errorf("%.80q: zdqueue_bad_input_total{kind=%q} went from %v to %v; want %v", tc.req, k, before[k], after[k], want)
				}
			}
		})
	}
	if v := metricValue(t, px.p, `zdqueue_panics_total`); v != 0 {
		t.Errorf("panics = %v; want 0", v)
	}
}

// exchange sends req on a fresh connection, reads n answers (their
// statuses), then either sends aliveReq and checks that it is answered
// (alive), or reads on to see whether zd-queue closes the connection
// (closed: the read ends with EOF or a reset, not the deadline).
func exchange(addr, req string, n int, alive bool) (statuses []int, closed bool, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	// Far below the header timeout (a minute), far above any answer.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, false, err
	}
	br := bufio.NewReader(c)
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if isClosed(err) {
				return statuses, true, nil
			}
			return statuses, false, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if alive {
		if _, err := io.WriteString(c, aliveReq); err != nil {
			return statuses, true, nil
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if isClosed(err) {
				return statuses, true, nil
			}
			return statuses, false, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "seen /alive\n" {
			return statuses, false, errors.New("the request after it: " + resp.Status + " " + string(b))
		}
		return statuses, false, nil
	}
	extra, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		return statuses, false, errors.New("more bytes after the answers: " + string(append([]byte{extra}, rest...)))
	}
	if isClosed(err) {
		return statuses, true, nil
	}
	return statuses, false, err
}

// isClosed reports whether a read error means the peer closed the
// connection (an orderly close or a reset), not a timeout.
func isClosed(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
