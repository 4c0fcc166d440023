package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/zdtools/zd/pkg/queue"
)

// pinBackend is a backend that answers 500 when the pin header reached it
// (zd-queue must strip it) and otherwise names itself.
func pinBackend(t *testing.T, dir, name string) *testBackend {
	return newTestBackend(t, dir, name, func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get(DefaultPinHeader); v != "" {
			http.Error(w, "pin header forwarded: "+v, http.StatusInternalServerError)
			return
		}
		w.Write([]byte("backend " + name + "\n"))
	})
}

func pinned(addr string) http.Header { return http.Header{DefaultPinHeader: {addr}} }

func TestPinnedRequestsHeldForPausedBackendAndReplayedInPriorityOrder(t *testing.T) {
	dir := sockDir(t)
	a := pinBackend(t, dir, "a")
	b := pinBackend(t, dir, "b")
	px := startProxy(t, Config{Backends: []string{a.addr, b.addr}, PinHeader: DefaultPinHeader,
		Limits: queue.Limits{ReplayConcurrency: 1}})
	if err := px.p.Pause(a.addr); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	// Pinned to a: held one after the other, so FIFO within a priority is
	// the order sent.
	prios := []int{0, 5, -3, 5, 9, 0, -3, 9}
	ch := make(chan result, len(prios))
	for i, pr := range prios {
		h := pinned(a.addr)
		h.Set("X-Priority", strconv.Itoa(pr))
		sendAsync(c, "GET", px.url, i, nil, h, ch)
		waitFor(t, "pinned request held", func() bool { return px.p.q.Stats().HeldByBackend[a.id()] == i+1 })
	}
	// Unpinned requests meanwhile are served by b at once.
	for i := 0; i < 10; i++ {
		if resp, body := get(t, c, px.url); resp.StatusCode != 200 || body != "backend b\n" {
			t.Fatalf("unpinned request while a is paused: %d %q", resp.StatusCode, body)
		}
	}
	if got := held(px.p); got != len(prios) {
		t.Fatalf("held %d, want %d", got, len(prios))
	}
	st := px.p.Status()
	var sawA bool
	for _, bs := range st.Backends {
		if bs.Addr == a.id() {
			sawA = true
			if bs.Held != len(prios) || bs.State != "paused" {
				t.Errorf("status of a: held %d state %s, want %d paused", bs.Held, bs.State, len(prios))
			}
		} else if bs.Held != 0 {
			t.Errorf("status of %s: held %d, want 0", bs.Addr, bs.Held)
		}
	}
	if !sawA {
		t.Fatalf("a missing from status: %+v", st.Backends)
	}
	if v := metricValue(t, px.p, `zdqueue_backend_held_requests{backend="`+a.id()+`"}`); v != float64(len(prios)) {
		t.Errorf("zdqueue_backend_held_requests for a = %v", v)
	}
	if a.hits.Load() != 0 {
		t.Fatalf("paused backend a got %d requests", a.hits.Load())
	}

	if err := px.p.Resume(a.addr); err != nil {
		t.Fatal(err)
	}
	res := collect(t, ch, len(prios))
	for i := range prios {
		if r := res[i]; r.code != 200 || r.body != "backend a\n" {
			t.Errorf("pinned request %d: %d %q, want 200 from a", i, r.code, r.body)
		}
	}
	want := []string{"4", "7", "1", "3", "0", "5", "2", "6"}
	if got := a.seqs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("replay order at a %v, want %v (priority, then FIFO)", got, want)
	}
	if v := metricValue(t, px.p, `zdqueue_pinned_requests_total{result="held"}`); v != float64(len(prios)) {
		t.Errorf("pinned held = %v", v)
	}
	if v := metricValue(t, px.p, `zdqueue_pinned_requests_total{result="routed"}`); v != float64(len(prios)) {
		t.Errorf("pinned routed = %v", v)
	}
}

// id is the backend's canonical id.
func (tb *testBackend) id() string {
	_, _, id, err := ParseBackend(tb.addr)
	if err != nil {
		tb.t.Fatal(err)
	}
	return id
}

func TestPinnedRequestsGoElsewhereWhenTheirBackendGoes(t *testing.T) {
	for _, how := range []string{"removed", "drained"} {
		t.Run(how, func(t *testing.T) {
			dir := sockDir(t)
			a := pinBackend(t, dir, "a")
			b := pinBackend(t, dir, "b")
			px := startProxy(t, Config{PinHeader: DefaultPinHeader})
			if err := px.p.SetBackends([]BackendSpec{{Addr: a.addr, Worker: true}, {Addr: b.addr, Worker: true, Slot: 1}}); err != nil {
				t.Fatal(err)
			}
			if err := px.p.Pause(a.addr); err != nil {
				t.Fatal(err)
			}
			c := client(t)
			const n = 5
			ch := make(chan result, n)
			for i := 0; i < n; i++ {
				pin := a.addr
				if i%2 == 1 {
					pin = "slot:0"
				}
				sendAsync(c, "POST", px.url, i, []byte("body "+strconv.Itoa(i)), pinned(pin), ch)
			}
			waitFor(t, "pinned requests held", func() bool { return px.p.q.Stats().HeldByBackend[a.id()] == n })
			switch how {
			case "removed":
				if err := px.p.SetBackends([]BackendSpec{{Addr: b.addr, Worker: true, Slot: 1}}); err != nil {
					t.Fatal(err)
				}
			case "drained":
				if _, err := px.p.Drain(t.Context(), a.addr, 0); err != nil {
					t.Fatal(err)
				}
			}
			res := collect(t, ch, n)
			for i := 0; i < n; i++ {
				if r := res[i]; r.code != 200 || r.body != "backend b\n" {
					t.Errorf("request %d: %d %q, want 200 from b", i, r.code, r.body)
				}
			}
			if a.hits.Load() != 0 {
				t.Errorf("a got %d requests", a.hits.Load())
			}
			if held(px.p) != 0 {
				t.Errorf("still held: %d", held(px.p))
			}
			if v := metricValue(t, px.p, `zdqueue_pinned_requests_total{result="unpinned"}`); v != n {
				t.Errorf("pinned unpinned = %v, want %d", v, n)
			}
		})
	}
}

func TestPinRouting(t *testing.T) {
	dir := sockDir(t)
	a := pinBackend(t, dir, "a")
	b := pinBackend(t, dir, "b")
	c2 := pinBackend(t, dir, "c")
	px := startProxy(t, Config{PinHeader: DefaultPinHeader})
	err := px.p.SetBackends([]BackendSpec{
		{Addr: a.addr, Worker: true, Slot: 0, Generation: 1},
		{Addr: b.addr, Worker: true, Slot: 1, Generation: 1},
		{Addr: c2.addr, Worker: true, Slot: 0, Generation: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	for _, tc := range []struct{ pin, want string }{
		{a.addr, "backend a\n"},
		{"unix:" + strings.TrimPrefix(a.addr, "unix://"), "backend a\n"}, // another spelling
		{b.addr, "backend b\n"},
		{"slot:0", "backend c\n"}, // the newest generation of slot 0
		{"slot:1", "backend b\n"},
	} {
		for i := 0; i < 5; i++ {
			if resp, body := get(t, c, px.url, DefaultPinHeader, tc.pin); resp.StatusCode != 200 || body != tc.want {
				t.Fatalf("pin %s: %d %q, want %q", tc.pin, resp.StatusCode, body, tc.want)
			}
		}
	}
	// Unknown backends are served like unpinned requests, and counted.
	for _, pin := range []string{"unix:///no/such.sock", "slot:7", "tcp://127.0.0.1:1"} {
		if resp, body := get(t, c, px.url, DefaultPinHeader, pin); resp.StatusCode != 200 || !strings.HasPrefix(body, "backend ") {
			t.Errorf("unknown pin %s: %d %q", pin, resp.StatusCode, body)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_pinned_requests_total{result="unknown"}`); v != 3 {
		t.Errorf("pinned unknown = %v, want 3", v)
	}
	// Malformed pins are refused.
	for _, pin := range []string{"slot:", "slot:-1", "slot:01", "ftp://x", "relative/path"} {
		if resp, body := get(t, c, px.url, DefaultPinHeader, pin); resp.StatusCode != 400 || !strings.Contains(body, DefaultPinHeader) {
			t.Errorf("malformed pin %q: %d %q, want 400", pin, resp.StatusCode, body)
		}
	}
	if v := metricValue(t, px.p, `zdqueue_pinned_requests_total{result="invalid"}`); v != 5 {
		t.Errorf("pinned invalid = %v, want 5", v)
	}
	// A draining backend takes no pinned requests either.
	if _, err := px.p.Drain(t.Context(), c2.addr, 0); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, c, px.url, DefaultPinHeader, c2.addr); body == "backend c\n" {
		t.Errorf("draining backend c got a pinned request")
	}
	if _, body := get(t, c, px.url, DefaultPinHeader, "slot:0"); body != "backend a\n" {
		t.Errorf("slot:0 with c draining: %q, want a (the newest ready worker of slot 0)", body)
	}
}

func TestPinningOff(t *testing.T) {
	dir := sockDir(t)
	seen := make(chan string, 1)
	a := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get(DefaultPinHeader)
	})
	px := startProxy(t, Config{Backends: []string{a.addr}})
	if resp, _ := get(t, client(t), px.url, DefaultPinHeader, "garbage value"); resp.StatusCode != 200 {
		t.Fatalf("with pinning off: %d", resp.StatusCode)
	}
	if v := <-seen; v != "garbage value" {
		t.Errorf("with pinning off the header is not zd-queue's: forwarded %q", v)
	}
}

func TestParsePin(t *testing.T) {
	for in, want := range map[string]Pin{
		"slot:0":                     {Slot: 0},
		"slot:65535":                 {Slot: 65535},
		"unix:///run/zd/app/w0.sock": {Backend: "unix:///run/zd/app/w0.sock", Slot: -1},
		"/run/zd/app/w0.sock":        {Backend: "unix:///run/zd/app/w0.sock", Slot: -1},
		"tcp://127.0.0.1:8080":       {Backend: "tcp://127.0.0.1:8080", Slot: -1},
	} {
		got, err := ParsePin(in)
		if err != nil || got != want {
			t.Errorf("ParsePin(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "slot:", "slot:65536", "slot:+1", "slot:00", "slot: 1", " slot:1", "slot:1\n",
		"ftp://x", "unix://rel", "tcp://h:0", "x\x00", strings.Repeat("a", 300)} {
		if got, err := ParsePin(in); err == nil {
			t.Errorf("ParsePin(%q) = %+v, want an error", in, got)
		}
	}
}

func FuzzParsePin(f *testing.F) {
	for _, s := range []string{"slot:3", "unix:///run/zd/w.sock", "tcp://[::1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err != nil {
			return
		}
		if p.Slot >= 0 {
			if p.Backend != "" || "slot:"+strconv.Itoa(p.Slot) != s || p.Slot > maxPinSlot {
				t.Fatalf("ParsePin(%q) = %+v", s, p)
			}
			return
		}
		// An address pin is canonical: parsing its id gives it back.
		q, err := ParsePin(p.Backend)
		if err != nil || q != p {
			t.Fatalf("ParsePin(%q) = %+v, but its id parses as %+v, %v", s, p, q, err)
		}
	})
}
