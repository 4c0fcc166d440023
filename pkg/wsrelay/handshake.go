package wsrelay

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key
// (RFC 6455 section 4.2.2).
func AcceptKey(key string) string {
	var dst [28]byte
	acceptKey(dst[:], []byte(key))
	return string(dst[:])
}

// Request is a client's WebSocket request, whatever carried it: an
// HTTP/1.1 Upgrade, an HTTP/2 or HTTP/3 extended CONNECT.
type Request struct {
	// Target is the path and query the backend is asked for ("/ws?room=1").
	Target string
	// Host is the authority the client asked for.
	Host string
	// Header holds the client's fields. Every end-to-end field goes to the
	// backend (Origin, Cookie, Authorization, Sec-WebSocket-Protocol, ...);
	// hop-by-hop ones, the client's own Sec-WebSocket-Key/-Version/
	// -Extensions (the relay terminates those) and any Zd-Session-Id or
	// Zd-Resume the client sent are not.
	Header http.Header
	// Transport is the client's protocol, for counting: "h1", "h2" or "h3"
	// (ServeHTTP sets "h1"; Open callers say theirs, "" counts as "h1").
	Transport string
	// Remote is the client's address as its connection gives it
	// (http.Request.RemoteAddr: "ip:port", "@" for a unix socket), for
	// looking at (SessionInfo); "" when unknown. ServeHTTP sets it.
	Remote string
}

// CheckUpgrade checks an HTTP/1.1 request is a valid WebSocket opening
// handshake (RFC 6455 section 4.2.1) and returns its Sec-WebSocket-Key.
// The error says what is wrong; the status to answer with is
// http.StatusBadRequest, or http.StatusUpgradeRequired (with
// "Sec-WebSocket-Version: 13") for a version other than 13.
func CheckUpgrade(r *http.Request) (key string, status int, err error) {
	if r.Method != http.MethodGet {
		return "", http.StatusBadRequest, errors.New("a WebSocket handshake must be a GET request")
	}
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return "", http.StatusBadRequest, errors.New("a WebSocket upgrade needs HTTP/1.1")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", http.StatusBadRequest, errors.New(`a WebSocket handshake needs "Connection: Upgrade" and "Upgrade: websocket"`)
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return "", http.StatusUpgradeRequired, fmt.Errorf("unsupported Sec-WebSocket-Version %q: only 13 is spoken", v)
	}
	key = strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", http.StatusBadRequest, errors.New("Sec-WebSocket-Key is not 16 bytes in base64")
	}
	return key, 0, nil
}

// CheckConnect checks the fields of an extended CONNECT for a WebSocket
// (RFC 8441 section 5 over HTTP/2, RFC 9220 over HTTP/3; the caller has
// checked :protocol is "websocket"): Sec-WebSocket-Version must be 13.
// There is no Sec-WebSocket-Key on these transports. The error says what
// is wrong; the status to answer with is http.StatusUpgradeRequired (with
// "Sec-WebSocket-Version: 13"), as CheckUpgrade's.
func CheckConnect(h http.Header) (status int, err error) {
	if v := h.Get("Sec-WebSocket-Version"); v != "13" {
		return http.StatusUpgradeRequired, fmt.Errorf("unsupported Sec-WebSocket-Version %q: only 13 is spoken", v)
	}
	return 0, nil
}

// headerHasToken reports whether a comma-separated field of h lists token.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[textproto.CanonicalMIMEHeaderKey(name)] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// notForwarded are the fields a backend handshake never copies from the
// client: hop-by-hop fields, the WebSocket fields of the client's own hop,
// and the relay's own fields (a client cannot choose its session id).
var notForwarded = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Proxy-Authorization": true, "Proxy-Authenticate": true, "Host": true,
	"Sec-Websocket-Key": true, "Sec-Websocket-Version": true, "Sec-Websocket-Extensions": true,
	"Sec-Websocket-Accept": true, "Http2-Settings": true,
	"Zd-Session-Id": true, "Zd-Resume": true,
}

// Handshake answers of a backend that refused the upgrade.
type RefusedError struct {
	Status int
	Header http.Header
	Body   []byte // at most 64 KiB of it
}

func (e *RefusedError) Error() string {
	return "backend refused the WebSocket upgrade with status " + strconv.Itoa(e.Status)
}

// backendConn is one backend attempt: zd-queue's own RFC 6455 client.
type backendConn struct {
	conn     net.Conn
	name     string
	protocol string
	header   http.Header // the first 101's end-to-end fields (Set-Cookie, ...), for the client's answer
	wmu      sync.Mutex
	rd       msgReader
	done     chan struct{} // closed when its read loop ended
}

var bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// handshake sends the client's request to the backend over conn and reads
// the 101. resume is 0 on the first attach.
func handshake(ctx context.Context, conn net.Conn, req *Request, sid string, resume int, timeout time.Duration) (*backendConn, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var kb [16]byte
	rand.Read(kb[:])
	var key [24]byte
	base64.StdEncoding.Encode(key[:], kb[:])
	out := getBuf()
	defer putBuf(out)
	b := *out
	target := req.Target
	if target == "" {
		target = "/"
	}
	b = append(b, "GET "...)
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	b = append(b, key[:]...)
	b = append(b, "\r\nZd-Session-Id: "...)
	b = append(b, sid...)
	if resume > 0 {
		b = append(b, "\r\nZd-Resume: "...)
		b = strconv.AppendInt(b, int64(resume), 10)
	}
	b = append(b, "\r\n"...)
	for k, vv := range req.Header {
		if notForwarded[k] || !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n\x00") {
				continue
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	*out = b
	if _, err := conn.Write(b); err != nil {
		return nil, fmt.Errorf("send the handshake to the backend: %w", err)
	}

	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() { br.Reset(nil); bufReaders.Put(br) }()
	proto, header, err := readAnswer(br, key[:], req, resume == 0)
	if err != nil {
		return nil, err
	}
	bc := &backendConn{conn: conn, protocol: proto, header: header, done: make(chan struct{})}
	carried, _ := br.Peek(br.Buffered())
	bc.rd.fr.init(conn, carried)
	return bc, nil
}

// answerFields are the fields of a backend's 101 that go into the client's
// handshake answer: all but hop-by-hop ones and those of the backend's own
// WebSocket hop (the subprotocol is passed on by Open); nil when none.
func answerFields(h http.Header) http.Header {
	var out http.Header
	for k, vv := range h {
		if notForwarded[k] || k == "Sec-Websocket-Protocol" || k == "Date" || !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n\x00") {
				continue
			}
			if out == nil {
				out = http.Header{}
			}
			out[k] = append(out[k], v)
		}
	}
	return out
}

func offered(h http.Header, proto string) bool {
	for _, v := range h["Sec-Websocket-Protocol"] {
		for v != "" {
			var p string
			p, v, _ = strings.Cut(v, ",")
			if strings.TrimSpace(p) == proto {
				return true
			}
		}
	}
	return false
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// newSessionID returns 128 random bits, hex.
func newSessionID() string {
	var b [16]byte
	rand.Read(b[:])
	const hexd = "0123456789abcdef"
	out := make([]byte, 32)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return string(out)
}
