package proxy

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"
)

// Screening the request heads the fast path leaves to net/http. net/http
// answers most malformed input itself (400, 431, 501, 505), but takes a
// few shapes that a proxy must not (request smuggling, RFC 9112 sections
// 6.1 and 6.3), and waits out the header timeout for a request line that
// is not HTTP at all. The screen looks at what has arrived, only on the
// slow path (a head the fast parser refused, or one still coming in), so
// the common request pays nothing for it.

// headVerdict is what screenHead makes of a request head.
type headVerdict uint8

const (
	headPass    headVerdict = iota // nothing wrong seen: net/http may have it
	headNotHTTP                    // the request line cannot be HTTP/1.x: close, no answer
	headBad                        // framing that cannot be trusted: 400, then close
)

// requestLineByte marks the bytes a request line may hold: visible ASCII
// and SP (RFC 9112 section 3; a target never holds raw control bytes or
// non-ASCII).
var requestLineByte = func() (t [256]bool) {
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	t[' '] = true
	return t
}()

// screenHead looks at b, what has arrived of a request head (all of it,
// part of it, or more), and reports:
//   - headNotHTTP when the request line, as far as it has come, cannot be
//     HTTP/1.x: a byte no request line holds, or a complete line that does
//     not end with " HTTP/d.d" (GARBAGE, HTTP/0.9's "GET /", an HTTP/2
//     client's bad preface, TLS on the cleartext port). Its peer could not
//     read an HTTP/1.1 answer; waiting for more only lets it hold the
//     connection.
//   - headBad, with the reason, for a field section (its complete lines)
//     with obsolete line folding, or a Transfer-Encoding that comes with a
//     Content-Length, in an HTTP/1.0 request, without chunked as the final
//     coding, or with chunked twice: a message whose length cannot be
//     trusted (RFC 9112 sections 5.2, 6.1, 6.3). HAProxy and nginx refuse
//     or neutralise these too.
//   - headPass otherwise (other faults are net/http's to answer).
func screenHead(b []byte) (headVerdict, string) {
	eol := bytes.IndexByte(b, '\n')
	line := b
	if eol >= 0 {
		line = b[:eol]
	}
	line = bytes.TrimSuffix(line, []byte{'\r'}) // a line still coming may end in its CR
	for _, c := range line {
		if !requestLineByte[c] {
			return headNotHTTP, ""
		}
	}
	if eol < 0 {
		return headPass, ""
	}
	if !endsWithVersion(line) {
		return headNotHTTP, ""
	}
	http10 := bytes.HasSuffix(line, []byte(" HTTP/1.0"))

	contentLengths, transferEncodings, chunked := 0, 0, 0
	last := ""
	for rest := b[eol+1:]; ; {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			break // a line still coming is not looked at
		}
		l := bytes.TrimSuffix(rest[:nl], []byte{'\r'})
		rest = rest[nl+1:]
		if len(l) == 0 {
			break // the end of the head
		}
		if l[0] == ' ' || l[0] == '\t' {
			return headBad, "obsolete line folding (a field line starting with whitespace) is not accepted"
		}
		colon := bytes.IndexByte(l, ':')
		if colon < 0 {
			continue // net/http refuses the line
		}
		switch name := string(l[:colon]); {
		case strings.EqualFold(name, "Content-Length"):
			contentLengths++
		case strings.EqualFold(name, "Transfer-Encoding"):
			transferEncodings++
			for coding := range strings.SplitSeq(string(l[colon+1:]), ",") {
				if coding = trimOWS(coding); coding != "" {
					if strings.EqualFold(coding, "chunked") {
						chunked++
					}
					last = coding
				}
			}
		}
	}
	switch {
	case transferEncodings == 0:
		return headPass, ""
	case contentLengths > 0:
		return headBad, "a request with both Content-Length and Transfer-Encoding is not accepted (RFC 9112 section 6.1)"
	case http10:
		return headBad, "Transfer-Encoding in an HTTP/1.0 request is not accepted (RFC 9112 section 6.1)"
	case !strings.EqualFold(last, "chunked"):
		return headBad, "the final transfer coding must be chunked (RFC 9112 section 6.3)"
	case chunked > 1:
		return headBad, "chunked may be applied only once (RFC 9112 section 7)"
	}
	return headPass, ""
}

// endsWithVersion reports whether a request line ends with " HTTP/d.d"
// after at least a method and a target.
func endsWithVersion(line []byte) bool {
	n := len(line)
	return n > len(" HTTP/1.1")+2 && string(line[n-9:n-3]) == " HTTP/" &&
		isDigit(line[n-3]) && line[n-2] == '.' && isDigit(line[n-1])
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// headEnd reports whether b holds a complete head whose lines may end in a
// bare LF (RFC 9112 section 2.2 lets a recipient take LF as a line end,
// as net/http, HAProxy and nginx do): an LF followed by LF or CRLF.
func headEnd(b []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		i += j + 1
		if rest := b[i:]; len(rest) > 0 && rest[0] == '\n' || len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n' {
			return true
		}
	}
}

// blankLines returns how many bytes of empty lines (CRLF or LF) b starts
// with: a server ignores empty lines before a request line (RFC 9112
// section 2.2; old clients send one after a POST body).
func blankLines(b []byte) int {
	n := 0
	for {
		switch {
		case len(b) > n && b[n] == '\n':
			n++
		case len(b) > n+1 && b[n] == '\r' && b[n+1] == '\n':
			n += 2
		default:
			return n
		}
	}
}

// refuseHead answers a request head the screen found untrustworthy with
// 400 and why, and ends the connection (the client may still be sending:
// lingerClose keeps the answer from being lost to a reset).
func (hc *h1conn) refuseHead(why string) {
	hc.p.m.badInput.WithLabelValues("malformed").Inc()
	hc.p.log.Debug("refused a request head", "remote", hc.remote, "why", why)
	body := "zd-queue: " + why + "\n"
	hc.c.SetWriteDeadline(time.Now().Add(hc.p.cfg.ReadHeaderTimeout))
	io.WriteString(hc.c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	hc.lingerClose()
}
