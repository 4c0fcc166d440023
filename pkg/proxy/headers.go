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
	conn := src["Connection"]
	for k, vv := range src {
		if isHop(k) || listedIn(conn, k) || k == "Expect" {
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
	conn := src["Connection"]
	for k, vv := range src {
		if isHop(k) || listedIn(conn, k) {
			continue
		}
		dst[k] = vv
	}
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// listedIn reports whether field k is named in the Connection header values
// conn, which makes it hop-by-hop too.
func listedIn(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
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
