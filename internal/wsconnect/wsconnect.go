// Package wsconnect is what internal/h2wsclient and internal/h3wsclient
// share: both let coder/websocket, which only knows HTTP/1.1 handshakes,
// run over an extended CONNECT (RFC 8441, RFC 9220) by doing the CONNECT in
// an http.RoundTripper and turning the server's 200 into the 101 the
// library checks.
package wsconnect

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// StatusError is a server's answer other than 200 to the extended CONNECT.
type StatusError struct {
	Status int
	Header http.Header
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("extended CONNECT answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// Header returns the fields of the extended CONNECT for the HTTP/1.1
// handshake req (without its Upgrade, Connection and Sec-WebSocket-Key,
// which these transports do not have) and the key the library will check
// the answer against.
func Header(req *http.Request) (h http.Header, key string) {
	h = req.Header.Clone()
	key = h.Get("Sec-WebSocket-Key")
	for _, k := range []string{"Connection", "Upgrade", "Sec-Websocket-Key"} {
		h.Del(k)
	}
	return h, key
}

// Refused reads (a bounded part of) a non-200 answer to req's CONNECT and
// returns it as a *StatusError, wrapped with the path asked for.
func Refused(req *http.Request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("%s: %w", req.URL.Path, &StatusError{Status: resp.StatusCode, Header: resp.Header, Body: string(b)})
}

// Switching is the 101 for the HTTP/1.1 handshake req that the server's
// 200 (resp) stands for: Sec-WebSocket-Accept made from key, the
// subprotocol and extensions the server chose, and the stream as its body.
func Switching(req *http.Request, key string, resp *http.Response, stream io.ReadWriteCloser) *http.Response {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	hdr := http.Header{
		"Upgrade":              {"websocket"},
		"Connection":           {"Upgrade"},
		"Sec-Websocket-Accept": {base64.StdEncoding.EncodeToString(sum[:])},
	}
	for _, k := range []string{"Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		if v := resp.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	return &http.Response{
		Status: "101 Switching Protocols", StatusCode: http.StatusSwitchingProtocols,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Body: stream, Request: req,
	}
}
