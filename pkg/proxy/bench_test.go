package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyH1 measures keep-alive HTTP/1.1 requests through the proxy
// to a unix-socket backend over real sockets (client, proxy and backend in
// one process, so it shows relative cost, not the proxy's capacity).
func BenchmarkProxyH1(b *testing.B) {
	t := &testing.T{}
	dir, cleanup := benchDir(b)
	defer cleanup()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	defer be.stop()
	px := startProxy(t, Config{Backends: []string{be.addr}})
	defer px.stop()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(px.url + "/")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
