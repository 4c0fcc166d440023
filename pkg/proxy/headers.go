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

// respFields are a response writer's header fields: its own map (what
// Header() returns) and, while the writer sends a backend's response as
// it is, the backend's header map. The fast-path writers share them.
type respFields struct {
	header http.Header // Header()'s map
	up     http.Header // the backend's response header, sent as it is (see useUpstreamHeader)
}

// useUpstreamHeader makes h, a backend's response header, the response's
// fields (with those of Header() that h does not have), without copying
// it into Header(); hop-by-hop fields are left out on the way out. The
// caller must not have anything in h that the response should not carry
// besides the hop-by-hop fields (no Trailer, nothing a Connection header
// names), and must call releaseUpstreamHeader before h changes.
func (f *respFields) useUpstreamHeader(h http.Header) { f.up = h }

// release ends the use of the upstream header; when the fields are not
// sent yet, its end-to-end fields are copied into own (Header()'s map) for
// when they are.
func (f *respFields) release(sent bool, own http.Header) {
	if f.up == nil {
		return
	}
	if !sent {
		copyResponseHeader(own, f.up)
	}
	f.up = nil
}

// field returns the values of k in the response's fields.
func (f *respFields) field(k string) []string {
	if vv, ok := f.up[k]; ok && !isHop(k) {
		return vv
	}
	return f.header[k]
}

// overridden reports whether Header()'s field k gives way to the
// backend's: the fields to send are Header()'s that are not overridden,
// then the backend's that are not hop-by-hop. (Writers loop over the two
// maps themselves: a callback here made each HTTP/2 stream's goroutine
// grow its stack once more, a copy per request.)
func (f *respFields) overridden(k string) bool {
	if f.up == nil {
		return false
	}
	_, over := f.up[k]
	return over && !isHop(k)
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
