package proxy

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the connection-specific fields of RFC 9110 section 7.6.1
// (plus the legacy Proxy-Connection and Keep-Alive): they describe one hop and
// are never forwarded.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// copyRequestHeader copies the end-to-end fields of src into dst.
func copyRequestHeader(dst, src http.Header) {
	conn := connectionListed(src["Connection"])
	for k, vv := range src {
		if isHop(k) || k == "Expect" || (conn != nil && conn[k]) {
			continue
		}
		dst[k] = vv
	}
	// "TE: trailers" is the one TE value that stays meaningful end to end:
	// it tells the backend the client accepts trailers (gRPC needs it).
	if te := src["Te"]; len(te) > 0 && httpguts.HeaderValuesContainsToken(te, "trailers") {
		dst["Te"] = []string{"trailers"}
	}
}

// copyResponseHeader copies the end-to-end fields of src into dst.
func copyResponseHeader(dst, src http.Header) {
	conn := connectionListed(src["Connection"])
	for k, vv := range src {
		if isHop(k) || (conn != nil && conn[k]) {
			continue
		}
		dst[k] = vv
	}
}

// connectionListed returns the fields named in Connection header values
// (canonicalised), which are hop-by-hop too; nil when there are none
// besides the usual keep-alive and close.
func connectionListed(conn []string) map[string]bool {
	var m map[string]bool
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" || strings.EqualFold(f, "keep-alive") || strings.EqualFold(f, "close") {
				continue
			}
			if m == nil {
				m = map[string]bool{}
			}
			m[http.CanonicalHeaderKey(f)] = true
		}
	}
	return m
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// setForwarded adds (a unix-socket client has no IP, so no
// X-Forwarded-For entry is made up for it) X-Forwarded-For, -Proto and -Host for r to h.
func setForwarded(h http.Header, r *http.Request) {
	// One backing array for the three values: one allocation, not three.
	vals := make([]string, 3)
	if ip, ok := remoteIP(r.RemoteAddr); ok {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		vals[0] = ip
		h["X-Forwarded-For"] = vals[0:1:1]
	}
	vals[1] = "http"
	if r.TLS != nil || r.ProtoMajor == 3 {
		vals[1] = "https"
	}
	h["X-Forwarded-Proto"] = vals[1:2:2]
	if r.Host != "" {
		vals[2] = r.Host
		h["X-Forwarded-Host"] = vals[2:3:3]
	}
}

// remoteIP returns the host part of a "host:port" or "[v6]:port" remote
// address as a substring (no allocation), and false for anything else (a
// unix-socket client's empty or "@" address).
func remoteIP(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, ':')
	if i <= 0 {
		return "", false
	}
	host := addr[:i]
	if host[0] == '[' {
		if len(host) < 3 || host[len(host)-1] != ']' {
			return "", false
		}
		return host[1 : len(host)-1], true
	}
	if strings.IndexByte(host, ':') >= 0 {
		return "", false // an IPv6 address without brackets is not host:port
	}
	return host, true
}

// isUpgrade reports whether r asks to switch protocols on its HTTP/1.1
// connection (WebSocket and the like), returning the protocol.
func isUpgrade(r *http.Request) (string, bool) {
	if r.ProtoMajor != 1 || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return "", false
	}
	up := r.Header.Get("Upgrade")
	return up, up != ""
}
