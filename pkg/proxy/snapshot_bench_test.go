package proxy

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/zdtools/zd/pkg/snapshot"
)

// BenchmarkSnapshot measures Snapshot, what a live dump costs zd-queue, on
// real state: 1,000 WebSocket sessions (idle, relayed to an echo backend),
// 200 held requests and their client connections; each record is encoded
// as the snapshot op sends it. cpu-ns/record is the process's CPU time
// (getrusage) per record: the state is idle, so it is the dump's, and it
// holds on a busy machine where ns/op does not.
func BenchmarkSnapshot(b *testing.B) {
	const sessions, nheld = 1000, 200
	t := &testing.T{}
	dir, cleanup := benchDir(b)
	defer cleanup()
	be := newTestBackend(t, dir, "a", h2wsEcho("a", newWSSeen()))
	defer be.stop()
	px := startProxy(t, Config{Backends: []string{be.addr}})
	defer px.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conns := make([]*websocket.Conn, 0, sessions)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := range sessions {
		c, _, err := websocket.Dial(ctx, "ws"+px.url[len("http"):]+"/ws?n="+strconv.Itoa(i), &websocket.DialOptions{
			HTTPHeader: http.Header{"Cookie": {"session=s" + strconv.Itoa(i)}}})
		if err != nil {
			b.Fatalf("session %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if err := px.p.Pause(""); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: nheld}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	ch := make(chan result, nheld)
	for i := range nheld {
		sendAsync(c, "POST", px.url+"/orders/"+strconv.Itoa(i), i, []byte(`{"item":42,"qty":1}`), http.Header{"Authorization": {"Bearer x"}}, ch)
	}
	for deadline := time.Now().Add(time.Minute); held(px.p) < nheld; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d requests held after a minute", held(px.p), nheld)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range nheld {
			<-ch
		}
	}()
	defer func() { px.p.Resume(""); wg.Wait() }()

	var buf []byte
	var n int64
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		st, err := px.p.Snapshot(ctx, SnapshotOptions{}, func(r *snapshot.Record) error {
			buf = r.AppendMsgpack(buf[:0], true)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if st.ByKind[snapshot.KindWSSession] != sessions || st.ByKind[snapshot.KindHTTPRequest] != nheld {
			b.Fatalf("Snapshot: %v; want %d ws-session and %d http-request", st.ByKind, sessions, nheld)
		}
		n = st.Records
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(int64(b.N)*n)
	b.ReportMetric(per, "ns/record")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(int64(b.N)*n), "cpu-ns/record")
	b.ReportMetric(float64(n), "records")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
