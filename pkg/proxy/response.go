package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// readResponseFast parses the common backend response without
// net/http's allocations: an HTTP/1.1 status 200-599 other than 204 and
// 304, with one valid Content-Length, no Transfer-Encoding, no folded
// lines, whose whole head is already in br's buffer. For anything else it
// returns ok false having consumed nothing, and the caller uses
// http.ReadResponse. The head becomes one string; names and values are
// substrings of it, and all values share one backing array.
func readResponseFast(bc *bconn, req *http.Request) (resp *http.Response, ok bool) {
	br := bc.br
	if req.Method == http.MethodHead {
		return nil, false
	}
	if _, err := br.Peek(1); err != nil {
		return nil, false // let http.ReadResponse report the error
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	head := string(buf[:end+2]) // each line ends with CRLF
	line, rest, crlf := cutLine(head)
	if !crlf {
		return nil, false
	}
	// "HTTP/1.1 200 OK": the version, a space, three digits, then a space
	// and a reason phrase or nothing.
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil, false
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	for _, c := range []byte(line[12:]) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, false
		}
	}

	nfields := 0
	for i := 0; i < len(rest); i++ {
		if rest[i] == '\n' {
			nfields++
		}
	}
	vals := make([]string, 0, nfields)
	// The map, response and body reader are the connection's, reused: the
	// proxy copies the fields out before the connection serves again. The
	// values' backing array is not: copied slices point into it.
	if bc.hdr == nil {
		bc.hdr = make(http.Header, nfields)
	}
	h := bc.hdr
	clear(h)
	length := int64(-1)
	closeConn := false
	for len(rest) > 0 {
		var l string
		var crlf bool
		l, rest, crlf = cutLine(rest)
		if !crlf {
			return nil, false // a bare LF: the slow path decides
		}
		name, v, ok := parseField(l)
		if !ok {
			return nil, false
		}
		switch name {
		case "Transfer-Encoding", "Trailer", "Pragma":
			// Pragma: net/http adds Cache-Control for "Pragma: no-cache".
			return nil, false
		case "Content-Length":
			if length >= 0 {
				return nil, false // repeated: the slow path decides
			}
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil {
				return nil, false
			}
			length = int64(n)
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				closeConn = true
			}
		}
		vals = append(vals, v)
		if prior, ok := h[name]; ok {
			h[name] = append(prior, v)
		} else {
			h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if length < 0 {
		return nil, false
	}
	br.Discard(end + 4)
	resp = &bc.resp
	*resp = http.Response{
		Status:        line[9:],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Close:         closeConn,
		Request:       req,
	}
	if length == 0 {
		resp.Body = http.NoBody
	} else {
		bc.body = lengthBody{br: br, left: length}
		resp.Body = &bc.body
	}
	return resp, true
}

// parseField parses one header field line (without its CRLF) into its
// canonical name and its value without surrounding whitespace. It refuses
// what the fast parsers leave to net/http: no colon, a name that is not a
// token (a folded line's leading space makes it so), a value with control
// characters.
func parseField(l string) (name, value string, ok bool) {
	colon := indexByte(l, ':')
	if colon <= 0 {
		return "", "", false
	}
	name = l[:colon]
	if !httpguts.ValidHeaderFieldName(name) {
		return "", "", false
	}
	value = trimOWS(l[colon+1:])
	if !httpguts.ValidHeaderFieldValue(value) {
		return "", "", false
	}
	return http.CanonicalHeaderKey(name), value, true
}

// cutLine splits s after its first LF; crlf reports whether the line
// ended with CRLF.
func cutLine(s string) (line, rest string, crlf bool) {
	i := indexByte(s, '\n')
	if i < 0 {
		return s, "", false
	}
	line = s[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		return line[:len(line)-1], s[i+1:], true
	}
	return line, s[i+1:], false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// trimOWS removes the optional whitespace (spaces and tabs) around a value.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// lengthBody is a response body of known length read from a pooled
// connection's reader: io.EOF after exactly left bytes, and
// io.ErrUnexpectedEOF when the connection ends before.
type lengthBody struct {
	br   *bufio.Reader
	left int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
