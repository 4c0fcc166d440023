package proxy

import (
	"net"
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
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = []string{ip}
	}
	proto := "http"
	if r.TLS != nil || r.ProtoMajor == 3 {
		proto = "https"
	}
	h["X-Forwarded-Proto"] = []string{proto}
	if r.Host != "" {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
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
