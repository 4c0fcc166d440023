package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// BenchmarkProxyH1 measures keep-alive HTTP/1.1 requests through the proxy
// to a unix-socket backend over real sockets, by request body size (client,
// proxy and backend share the process, so it shows relative cost, not the
// proxy's capacity; bench/proxy-compare.sh measures that).
func BenchmarkProxyH1(b *testing.B) {
	t := &testing.T{}
	dir, cleanup := benchDir(b)
	defer cleanup()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello")
	})
	defer be.stop()
	px := startProxy(t, Config{Backends: []string{be.addr}})
	defer px.stop()
	for _, size := range []int{0, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			body := bytes.Repeat([]byte("x"), size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					method, rd := "GET", io.Reader(nil)
					if size > 0 {
						method, rd = "POST", bytes.NewReader(body)
					}
					req, _ := http.NewRequest(method, px.url+"/", rd)
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// BenchmarkProxyH2 measures cleartext HTTP/2 requests (many streams on
// one connection) through the proxy to a unix-socket backend.
func BenchmarkProxyH2(b *testing.B) {
	t := &testing.T{}
	dir, cleanup := benchDir(b)
	defer cleanup()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	defer be.stop()
	px := startProxy(t, Config{Backends: []string{be.addr}})
	defer px.stop()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8)
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
