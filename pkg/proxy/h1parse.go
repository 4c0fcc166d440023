package proxy

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Parsing an HTTP/1.1 request head on the fast path. The parser only
// accepts: whatever it does not take goes to net/http (handover.go).

// parse parses a request head (ending with the empty line) into the
// connection's reused request. It returns false for anything it leaves
// to net/http.
func (hc *h1conn) parse(b []byte) (*http.Request, bool) {
	// "METHOD SP /target SP HTTP/1.1 CRLF"
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 <= 0 {
		return nil, false
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < sp1 || b[eol-1] != '\r' {
		return nil, false
	}
	line := b[:eol-1]
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return nil, false
	}
	sp2 += sp1 + 1
	if string(line[sp2+1:]) != "HTTP/1.1" {
		return nil, false
	}
	method, target := line[:sp1], line[sp1+1:sp2]
	if !validToken(method) || target[0] != '/' {
		return nil, false
	}
	plain, inQuery := true, false
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, false
		}
		if c == '?' {
			inQuery = true
		} else if !inQuery && !plainPathByte[c] {
			plain = false
		}
	}

	// One string for the whole head: the method, target, names and values
	// are substrings of it.
	head := string(b)
	methodS := internMethod(method, head[:sp1])
	targetS := head[sp1+1 : sp2]
	rest := head[eol+1 : len(head)-2] // the header lines, each ending in CRLF

	h := hc.hdr
	clear(h)
	n := strings.Count(rest, "\n")
	if cap(hc.vals) < n {
		hc.vals = make([]string, 0, max(n, 16))
	}
	vals := hc.vals[:0]
	host, hosts := "", 0
	length := int64(0)
	lengths := 0
	closeConn := false
	for len(rest) > 0 {
		nl := strings.IndexByte(rest, '\n')
		if nl < 1 || rest[nl-1] != '\r' {
			return nil, false
		}
		l := rest[:nl-1]
		rest = rest[nl+1:]
		name, v, ok := parseField(l)
		if !ok {
			return nil, false
		}
		switch name {
		case "Host":
			host = v
			hosts++
			continue // net/http keeps it in Request.Host only
		case "Content-Length":
			cl, err := strconv.ParseUint(v, 10, 63)
			if err != nil || v[0] == '+' {
				return nil, false
			}
			length = int64(cl)
			lengths++
		case "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings":
			return nil, false
		case "Connection":
			for f := range strings.SplitSeq(v, ",") {
				switch f = trimOWS(f); {
				case strings.EqualFold(f, "close"):
					closeConn = true
				case strings.EqualFold(f, "upgrade"):
					return nil, false
				}
			}
		}
		vals = append(vals, v)
		if prior, ok := h[name]; ok {
			h[name] = append(prior, v)
		} else {
			h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	hc.vals = vals
	if hosts != 1 || !httpguts.ValidHostHeader(host) || lengths > 1 {
		return nil, false
	}

	path, query := targetS, ""
	if q := strings.IndexByte(targetS, '?'); q >= 0 {
		path, query = targetS[:q], targetS[q+1:]
	}
	hc.url = url.URL{Path: path, RawQuery: query}
	if !plain {
		// Escapes and the like: net/url's reading of them (Path, RawPath).
		// The backend gets the target as sent either way.
		u, err := url.ParseRequestURI(targetS)
		if err != nil {
			return nil, false
		}
		hc.url = *u
	}

	if hc.req == nil {
		hc.req = new(http.Request)
	}
	r := hc.req
	*r = *hc.tmpl
	r.Method = methodS
	r.URL = &hc.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = h
	r.Host = host
	r.RemoteAddr = hc.remote
	r.RequestURI = targetS
	r.TLS = hc.tlsState
	r.Close = closeConn
	r.ContentLength = length
	r.Body = http.NoBody
	hc.body = h1body{}
	if length > 0 {
		hc.body = h1body{hc: hc, left: length}
		r.Body = &hc.body
	}
	return r, true
}

// plainPathByte marks the bytes a path may hold that net/url neither
// unescapes nor would escape: for a path of only these, URL.Path is the
// path as sent and RawPath is empty.
var plainPathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// internMethod returns the common methods as constants, so the head's
// string is not kept alive by a method name stored elsewhere.
func internMethod(b []byte, s string) string {
	switch string(b) {
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return s
}

func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}
