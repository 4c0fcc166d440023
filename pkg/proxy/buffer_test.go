package proxy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/queue"
	"github.com/zdtools/zd/pkg/queueapi"
)

// result is one client request's answer.
type result struct {
	seq        int
	code       int
	retryAfter string
	body       string
	err        error
}

// sendAsync sends a request in the background and delivers its result.
func sendAsync(c *http.Client, method, url string, seq int, body []byte, hdr http.Header, out chan<- result) {
	go func() {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			out <- result{seq: seq, err: err}
			return
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("X-Seq", strconv.Itoa(seq))
		resp, err := c.Do(req)
		if err != nil {
			out <- result{seq: seq, err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- result{seq: seq, code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b), err: err}
	}()
}

func held(p *Proxy) int { return p.q.Stats().Held }

func collect(t *testing.T, ch <-chan result, n int) map[int]result {
	t.Helper()
	out := map[int]result{}
	// A bound for a hung proxy, not a speed limit: 10,000 replays under
	// -race on a busy 2-core machine take minutes.
	timeout := time.After(5 * time.Minute)
	for len(out) < n {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Errorf("request %d: %v", r.seq, r.err)
			}
			out[r.seq] = r
		case <-timeout:
			t.Fatalf("only %d of %d answers", len(out), n)
		}
	}
	return out
}

func TestPauseResumeReplaysHeldRequests(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	if err := px.p.Pause(""); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	ch := make(chan result, 20)
	for i := 0; i < 20; i++ {
		sendAsync(c, "POST", px.url+"/x", i, []byte("body "+strconv.Itoa(i)), nil, ch)
	}
	waitFor(t, "20 held requests", func() bool { return held(px.p) == 20 })
	if be.hits.Load() != 0 {
		t.Fatalf("backend saw %d requests while paused", be.hits.Load())
	}
	st := px.p.Status()
	if !st.Paused || st.BufferedRequests != 20 || st.Health != "reloading" {
		t.Errorf("status while paused: paused=%v buffered=%d health=%s", st.Paused, st.BufferedRequests, st.Health)
	}
	if err := px.p.Resume(""); err != nil {
		t.Fatal(err)
	}
	for seq, r := range collect(t, ch, 20) {
		if r.code != 200 {
			t.Errorf("request %d: %d %q", seq, r.code, r.body)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="replayed"}`); v != 20 {
		t.Errorf("replayed = %v; want 20", v)
	}
}

func TestAutoBufferUntilBackendAppears(t *testing.T) {
	dir := sockDir(t)
	px := startProxy(t, Config{})
	c := client(t)
	ch := make(chan result, 5)
	for i := 0; i < 5; i++ {
		sendAsync(c, "GET", px.url+"/x", i, nil, nil, ch)
	}
	waitFor(t, "5 held requests", func() bool { return held(px.p) == 5 })
	if h := px.p.Status().Health; h != "degraded" {
		t.Errorf("health with no backend = %q; want degraded", h)
	}
	be := newTestBackend(t, dir, "late", nil)
	if err := px.p.SetBackends([]BackendSpec{{Addr: be.addr}}); err != nil {
		t.Fatal(err)
	}
	for seq, r := range collect(t, ch, 5) {
		if r.code != 200 || r.body != "backend late\n" {
			t.Errorf("request %d: %d %q", seq, r.code, r.body)
		}
	}
}

func TestFlushAnswers503(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxAge: time.Minute, RetryAfter: 7 * time.Second}})
	px.p.Pause("")
	c := client(t)
	ch := make(chan result, 3)
	for i := 0; i < 3; i++ {
		sendAsync(c, "GET", px.url, i, nil, nil, ch)
	}
	waitFor(t, "3 held", func() bool { return held(px.p) == 3 })
	if n := px.p.Flush(); n != 3 {
		t.Errorf("Flush() = %d; want 3", n)
	}
	for seq, r := range collect(t, ch, 3) {
		if r.code != 503 || r.retryAfter != "7" {
			t.Errorf("request %d: %d Retry-After %q; want 503 and 7", seq, r.code, r.retryAfter)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="flushed"}`); v != 3 {
		t.Errorf("flushed = %v; want 3", v)
	}
	px.p.Resume("")
	if r, _ := get(t, c, px.url); r.StatusCode != 200 {
		t.Errorf("after resume: %d", r.StatusCode)
	}
}

func TestOverflowRejectAtCountLimit(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxCount: 5, Overflow: queue.Reject}})
	px.p.Pause("")
	c := client(t)
	ch := make(chan result, 6)
	for i := 0; i < 5; i++ {
		sendAsync(c, "GET", px.url, i, nil, nil, ch)
		waitFor(t, "held", func() bool { return held(px.p) == i+1 })
	}
	sendAsync(c, "GET", px.url, 5, nil, nil, ch)
	r := <-ch
	if r.seq != 5 || r.code != 503 || r.retryAfter == "" {
		t.Fatalf("6th request: seq %d code %d Retry-After %q; want seq 5, 503 with Retry-After", r.seq, r.code, r.retryAfter)
	}
	px.p.Resume("")
	for seq, r := range collect(t, ch, 5) {
		if r.code != 200 {
			t.Errorf("held request %d: %d", seq, r.code)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="overflow"}`); v != 1 {
		t.Errorf("overflow = %v; want 1", v)
	}
}

func TestOverflowOldestEvicts(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxCount: 3, Overflow: queue.Oldest}})
	px.p.Pause("")
	c := client(t)
	ch := make(chan result, 4)
	for i := 0; i < 4; i++ {
		sendAsync(c, "GET", px.url, i, nil, nil, ch)
		if i < 3 {
			waitFor(t, "held", func() bool { return held(px.p) == i+1 })
		}
	}
	r := <-ch
	if r.seq != 0 || r.code != 503 || r.retryAfter == "" {
		t.Fatalf("first answer: seq %d code %d Retry-After %q; want the oldest (0) with 503", r.seq, r.code, r.retryAfter)
	}
	waitFor(t, "3 held", func() bool { return held(px.p) == 3 })
	px.p.Resume("")
	for seq, r := range collect(t, ch, 3) {
		if r.code != 200 {
			t.Errorf("request %d: %d", seq, r.code)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="evicted"}`); v != 1 {
		t.Errorf("evicted = %v; want 1", v)
	}
}

func TestOverflowCompressKeepsMore(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%x", sha256.Sum256(b))
	})
	body := bytes.Repeat([]byte("zero-downtime "), 2000) // 28 KB, compresses well
	sum := fmt.Sprintf("%x", sha256.Sum256(body))
	// Room for 3 raw bodies (with overhead); 8 fit only if compressed.
	limit := int64(3*(len(body)+1024) + 512)
	for _, tc := range []struct {
		overflow queue.Overflow
		wantOK   int
	}{{queue.Reject, 3}, {queue.Compress, 8}} {
		t.Run(tc.overflow.String(), func(t *testing.T) {
			px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxBytes: limit, Overflow: tc.overflow}})
			px.p.Pause("")
			c := client(t)
			ch := make(chan result, 8)
			rejected := 0
			for i := 0; i < 8; i++ {
				sendAsync(c, "POST", px.url, i, body, nil, ch)
				waitFor(t, "held or rejected", func() bool {
					if held(px.p)+rejected == i+1 {
						return true
					}
					select {
					case r := <-ch:
						if r.code != 503 || r.retryAfter == "" {
							t.Errorf("early answer %d: %d %q", r.seq, r.code, r.body)
						}
						rejected++
					default:
					}
					return false
				})
			}
			px.p.Resume("")
			ok := 0
			for _, r := range collect(t, ch, 8-rejected) {
				if r.code == 200 {
					if r.body != sum {
						t.Errorf("request %d: body reached the backend changed", r.seq)
					}
					ok++
				}
			}
			if ok != tc.wantOK {
				t.Errorf("replayed %d; want %d (rejected %d)", ok, tc.wantOK, rejected)
			}
		})
	}
}

func TestAgeLimitExpires(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxAge: 100 * time.Millisecond}})
	px.p.Pause("")
	c := client(t)
	ch := make(chan result, 1)
	sendAsync(c, "GET", px.url, 0, nil, nil, ch)
	r := <-ch
	if r.code != 503 || r.retryAfter == "" {
		t.Fatalf("expired request: %d Retry-After %q (err %v); want 503 with Retry-After", r.code, r.retryAfter, r.err)
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="expired"}`); v != 1 {
		t.Errorf("expired = %v; want 1", v)
	}
}

func TestTooLargeWhilePaused(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{MaxBytes: 64 << 10}})
	c := client(t)
	big := bytes.Repeat([]byte("x"), 100<<10)
	// Passing through, size is not the buffer's business.
	ch := make(chan result, 2)
	sendAsync(c, "POST", px.url, 0, big, nil, ch)
	if r := <-ch; r.code != 200 {
		t.Fatalf("unpaused big POST: %d", r.code)
	}
	px.p.Pause("")
	sendAsync(c, "POST", px.url, 1, big, nil, ch)
	if r := <-ch; r.code != 413 {
		t.Fatalf("paused big POST: %d; want 413", r.code)
	}
	if v := metricValue(t, px.p, `zdqueue_requests_total{outcome="too_large"}`); v != 1 {
		t.Errorf("too_large = %v; want 1", v)
	}
}

func TestPerBackendPause(t *testing.T) {
	dir := sockDir(t)
	a := newTestBackend(t, dir, "a", nil)
	b := newTestBackend(t, dir, "b", nil)
	px := startProxy(t, Config{Backends: []string{a.addr, b.addr}})
	if err := px.p.Pause(a.addr); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	for i := 0; i < 10; i++ {
		if _, body := get(t, c, px.url); body != "backend b\n" {
			t.Fatalf("with a paused got %q", body)
		}
	}
	// With every backend paused, requests are held, then replayed.
	px.p.Pause(b.addr)
	ch := make(chan result, 1)
	sendAsync(c, "GET", px.url, 0, nil, nil, ch)
	waitFor(t, "held", func() bool { return held(px.p) == 1 })
	px.p.Resume(a.addr)
	if r := <-ch; r.code != 200 || r.body != "backend a\n" {
		t.Errorf("after resuming a: %d %q", r.code, r.body)
	}
	if err := px.p.Pause("unix:///nope.sock"); err == nil {
		t.Errorf("pausing an unknown backend succeeded")
	}
}

func TestDrainWaitsForInFlight(t *testing.T) {
	dir := sockDir(t)
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	a := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-block
		}
		io.WriteString(w, "a")
	})
	b := newTestBackend(t, dir, "b", nil)
	px := startProxy(t, Config{Backends: []string{a.addr}})
	c := client(t)
	ch := make(chan result, 1)
	sendAsync(c, "GET", px.url+"/slow", 0, nil, nil, ch)
	<-entered
	px.p.SetBackends([]BackendSpec{{Addr: a.addr}, {Addr: b.addr}})
	// A short drain times out with the request still in flight.
	res, err := px.p.Drain(t.Context(), a.addr, 20*time.Millisecond)
	if err != nil || res.Drained || res.InFlight != 1 {
		t.Fatalf("Drain = %+v, %v; want not drained, 1 in flight", res, err)
	}
	for i := 0; i < 5; i++ {
		if _, body := get(t, c, px.url); body != "backend b\n" {
			t.Fatalf("draining backend got a new request (%q)", body)
		}
	}
	done := make(chan queueapi.DrainResult)
	go func() {
		r, _ := px.p.Drain(t.Context(), a.addr, 10*time.Second)
		done <- r
	}()
	close(block)
	if r := <-done; !r.Drained {
		t.Errorf("Drain after the request finished = %+v", r)
	}
	if r := <-ch; r.code != 200 {
		t.Errorf("in-flight request on the draining backend: %d", r.code)
	}
}

// TestPriorityReplay10k holds 10,000 requests with mixed priorities and
// checks they reach the backend highest priority first, in arrival order
// within a priority. Replay concurrency 1 makes the backend's arrival order
// the release order. The replay rate is logged, not asserted.
func TestPriorityReplay10k(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 requests")
	}
	const n = 10000
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, conc := range []int{1, 64} {
		t.Run(fmt.Sprintf("replay-concurrency=%d", conc), func(t *testing.T) {
			be.mu.Lock()
			be.order = nil
			be.mu.Unlock()
			px := startProxy(t, Config{Backends: []string{be.addr}, Limits: queue.Limits{
				MaxCount: n, MaxBytes: 64 << 20, MaxAge: time.Hour, ReplayConcurrency: conc}})
			px.p.Pause("")
			// h2c: 10,000 waiting requests as streams over a few connections.
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tr.Protocols.SetUnencryptedHTTP2(true)
			defer tr.CloseIdleConnections()
			// No client timeout: the first request waits while the other
			// 9,999 are pushed (minutes under -race on a busy machine);
			// collect bounds the wait for the answers.
			c := &http.Client{Transport: tr}
			ch := make(chan result, n)
			prio := make([]int, n)
			for i := 0; i < n; i++ {
				prio[i] = (i*7)%19 - 9 // -9..9, interleaved
				hdr := http.Header{"X-Priority": {strconv.Itoa(prio[i])}}
				if i%97 == 0 {
					hdr.Set("X-Urgent", "true")
					prio[i] = 10
				}
				sendAsync(c, "GET", px.url, i, nil, hdr, ch)
				// Push one at a time so that arrival order is known (and the
				// client keeps few connections, as a real h2 client would).
				// Sleep between polls rather than spin: a spinning poller
				// takes the CPU the proxy needs to push the request.
				deadline := time.Now().Add(30 * time.Second)
				for px.p.q.Stats().PushedTotal < uint64(i+1) {
					if time.Now().After(deadline) {
						t.Fatalf("request %d never reached the buffer", i)
					}
					time.Sleep(20 * time.Microsecond)
				}
			}
			waitFor(t, "all held", func() bool { return held(px.p) == n })
			start := time.Now()
			px.p.Resume("")
			got := collect(t, ch, n)
			elapsed := time.Since(start)
			for seq, r := range got {
				if r.code != 200 {
					t.Fatalf("request %d: %d %q", seq, r.code, r.body)
				}
			}
			t.Logf("replayed %d requests in %v: %.0f req/s (replay concurrency %d)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), conc)
			want := make([]int, n)
			for i := range want {
				want[i] = i
			}
			sort.SliceStable(want, func(a, b int) bool { return prio[want[a]] > prio[want[b]] })
			order := be.seqs()
			if len(order) != n {
				t.Fatalf("backend saw %d requests; want %d", len(order), n)
			}
			if conc != 1 {
				return // concurrent replay overlaps neighbours; order is checked at concurrency 1
			}
			for i := range order {
				if order[i] != strconv.Itoa(want[i]) {
					t.Fatalf("replay position %d: request %s (priority %s); want %d (priority %d)",
						i, order[i], order[i], want[i], prio[want[i]])
				}
			}
		})
	}
}

func TestStopAnswersHeldRequests(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}, ShutdownGrace: time.Minute})
	px.p.Pause("")
	c := client(t)
	ch := make(chan result, 1)
	sendAsync(c, "GET", px.url, 0, nil, nil, ch)
	waitFor(t, "held", func() bool { return held(px.p) == 1 })
	start := time.Now()
	go px.stop()
	r := <-ch
	if r.code != 503 || r.retryAfter == "" {
		t.Fatalf("held request at stop: %d Retry-After %q (err %v); want 503 with Retry-After", r.code, r.retryAfter, r.err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("answered after %v: the stop waited for its grace instead", d)
	}
}
