package wsrelay

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// A backend's answer to a handshake is read here. A re-attach reads one
// per moved session, so the common answer, a 101 whose head is in one
// buffer with every line ending in CRLF and no folded field, is parsed in
// place without net/http (which allocates a Response, a Header map and a
// string per field: about 20 allocations of the 55 a move made). Anything
// else (a refusal, bare LF line ends, obs-fold, an odd status line, a head
// longer than the buffer) is left unread and goes to http.ReadResponse, as
// every answer did before; so does every first attach, whose 101's
// end-to-end fields go into the client's answer.

// switchFields are the fields of a 101 the relay checks.
type switchFields struct {
	upgrade, connection bool   // Upgrade lists websocket, Connection lists upgrade
	accept              []byte // Sec-WebSocket-Accept (the first)
	extensions          []byte // Sec-WebSocket-Extensions (the first)
	protocol            []byte // Sec-WebSocket-Protocol (the first)
	seen                uint8  // which of the three came (1, 2, 4), as Header.Get takes the first
}

// check checks a 101 against the key sent and the client's offer and
// returns the subprotocol the backend chose.
func (f *switchFields) check(key []byte, req *Request) (string, error) {
	if !f.upgrade || !f.connection {
		return "", errors.New("backend's 101 lacks Upgrade: websocket / Connection: Upgrade")
	}
	var want [28]byte
	acceptKey(want[:], key)
	if !bytes.Equal(f.accept, want[:]) {
		return "", errors.New("backend's Sec-WebSocket-Accept does not match the key sent")
	}
	if len(f.extensions) > 0 {
		return "", fmt.Errorf("backend accepted extensions %q that were not offered", f.extensions)
	}
	if len(f.protocol) == 0 {
		return "", nil
	}
	proto := string(f.protocol)
	if !offered(req.Header, proto) {
		return "", fmt.Errorf("backend chose subprotocol %q that the client did not offer", proto)
	}
	return proto, nil
}

// acceptKey writes the Sec-WebSocket-Accept value for key into dst (28
// bytes); a key of the usual 24 characters or fewer without allocating.
func acceptKey(dst, key []byte) {
	var kg [24 + len(acceptGUID)]byte
	var h [sha1.Size]byte
	if len(key) <= 24 {
		n := copy(kg[:], key)
		n += copy(kg[n:], acceptGUID)
		h = sha1.Sum(kg[:n])
	} else {
		h = sha1.Sum(append(append([]byte(nil), key...), acceptGUID...))
	}
	base64.StdEncoding.Encode(dst, h[:])
}

// fromHeader fills f from a parsed answer's fields.
func (f *switchFields) fromHeader(h http.Header) {
	f.upgrade = headerHasToken(h, "Upgrade", "websocket")
	f.connection = headerHasToken(h, "Connection", "upgrade")
	first := func(k string) []byte {
		if v := h[k]; len(v) > 0 {
			return []byte(v[0])
		}
		return nil
	}
	f.accept = first("Sec-Websocket-Accept")
	f.extensions = first("Sec-Websocket-Extensions")
	f.protocol = first("Sec-Websocket-Protocol")
}

// peekHead returns the head of the answer (status line and fields, through
// the empty line) buffered in br, without consuming it. ok is false when
// it is not of the plain form parse101 takes, or the connection failed:
// then all of it that arrived is still buffered for http.ReadResponse.
func peekHead(br *bufio.Reader) (head []byte, ok bool) {
	for {
		b, _ := br.Peek(br.Buffered())
		for i := 0; i < len(b); {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				break
			}
			if j == 0 || b[i+j-1] != '\r' {
				return nil, false // bare LF: not ours to judge
			}
			if j == 1 {
				return b[:i+2], true
			}
			i += j + 1
		}
		if br.Buffered() == br.Size() {
			return nil, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			// http.ReadResponse reads again and names what is wrong (a
			// closed or timed-out connection fails again the same way).
			return nil, false
		}
	}
}

// parse101 parses head (from peekHead) if it is a 101 in the plain form:
// "HTTP/1.1 101" and a reason, then "Name: value" lines with a valid name.
// ok is false for anything else, left to http.ReadResponse.
func parse101(head []byte, f *switchFields) (ok bool) {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	for {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			return true
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || !validName(name) || !validValue(value) {
			return false // also a folded line, which starts with a space
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			f.upgrade = f.upgrade || hasToken(value, "websocket")
		case bytes.EqualFold(name, []byte("Connection")):
			f.connection = f.connection || hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			if f.seen&1 == 0 {
				f.accept, f.seen = value, f.seen|1
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")):
			if f.seen&2 == 0 {
				f.extensions, f.seen = value, f.seen|2
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			if f.seen&4 == 0 {
				f.protocol, f.seen = value, f.seen|4
			}
		}
	}
}

// validName reports whether k is a token (RFC 9110's tchar only), the
// field names net/http reads without an error.
func validName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue reports whether v has no control byte but tab, as net/http
// requires of a field value.
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds token (ASCII
// case-insensitive, spaces around items ignored).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.Trim(item, " \t"), []byte(token)) {
			return true
		}
	}
	return false
}

// readAnswer reads the backend's answer to a handshake sent with key from
// br. A 101 is checked and its subprotocol returned; when header is true
// its end-to-end fields are returned too (for the client's answer). A
// refusal is a *RefusedError.
func readAnswer(br *bufio.Reader, key []byte, req *Request, header bool) (proto string, h http.Header, err error) {
	if !header {
		head, ok := peekHead(br)
		var f switchFields
		if ok && parse101(head, &f) {
			proto, err := f.check(key, req)
			br.Discard(len(head))
			return proto, nil, err
		}
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return "", nil, fmt.Errorf("read the backend's handshake answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return "", nil, &RefusedError{Status: resp.StatusCode, Header: resp.Header, Body: body}
	}
	var f switchFields
	f.fromHeader(resp.Header)
	if proto, err = f.check(key, req); err != nil {
		return "", nil, err
	}
	if header {
		h = answerFields(resp.Header)
	}
	return proto, h, nil
}
