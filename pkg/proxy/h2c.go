//lint:file-ignore SA1019 net/http serves h2c with prior knowledge only; the Upgrade path
// (RFC 7540 section 3.2, curl --http2) exists only in x/net's deprecated h2c.

package proxy

import (
	"net/http"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// h2cUpgrade adds the HTTP/1.1 "Upgrade: h2c" path (RFC 7540 section 3.2,
// what curl --http2 does on cleartext) to next. net/http's own
// UnencryptedHTTP2 covers prior knowledge only. Upgraded connections are
// served by x/net/http2 with next as the handler.
func h2cUpgrade(next http.Handler, srv *http.Server) http.Handler {
	h2s := &http2.Server{MaxConcurrentStreams: 250, IdleTimeout: srv.IdleTimeout}
	up := h2c.NewHandler(next, h2s)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.Header.Get("Http2-Settings") != "" &&
			httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "h2c") &&
			httpguts.HeaderValuesContainsToken(r.Header["Connection"], "http2-settings") {
			if e := connEntryFrom(r.Context()); e != nil {
				e.proto.Store(protoH2C) // and upgraded, once hijacked (netHTTPConnState)
			}
			up.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
