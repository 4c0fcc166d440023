package proxy

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
)

// A self-test whose context ends before its synthetic request is held
// returns, and leaves no goroutine behind: its hold goroutine used to block
// for ever sending its result to nobody.
func TestSelfTestCancelledLeavesNoGoroutine(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	p, err := New(Config{Backends: []string{be.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "a routable backend", func() bool { return p.rt.routableCount() > 0 })
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		if res := p.SelfTest(ctx); res.OK || res.Error == "" {
			t.Fatalf("SelfTest(cancelled) #%d = %+v; want an error", i, res)
		}
	}
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left by SelfTest with a cancelled context: %v", err)
	}
}

// A WINDOW_UPDATE that takes a stream's send window past 2^31-1 resets
// that stream with FLOW_CONTROL_ERROR (RFC 9113 section 6.9.1), from the
// read loop itself; the connection goes on.
func TestH2StreamWindowOverflow(t *testing.T) {
	dir := sockDir(t)
	g := newGate()
	be := newTestBackend(t, dir, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			g.wait()
		}
	})
	px := startProxy(t, Config{Backends: []string{be.addr}})
	t.Cleanup(g.open)
	r := dialRawH2(t, px.addr)
	hold := slices.Clone(rawGET)
	hold[len(hold)-1] = "/hold"
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(hold...), EndStream: true, EndHeaders: true})
	r.fr.WriteWindowUpdate(1, h2MaxWindow)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: r.block(rawGET...), EndStream: true, EndHeaders: true})
	got := r.until(t, 3)
	for _, want := range []string{"RST 1 FLOW_CONTROL_ERROR", "200 on 3"} {
		if !slices.Contains(got, want) {
			t.Errorf("got %v; want %q among them", got, want)
		}
	}
}
