package wsrelay

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestBreakdown: Breakdown counts sessions by backend and transport, and
// sessions waiting between backends under "".
func TestBreakdown(t *testing.T) {
	a, b := startEcho(t, "a", false), startEcho(t, "b", false)
	rt := &router{}
	rt.set(a, b)
	r, url := startRelay(t, Config{}, rt)
	for range 4 {
		c, _, err := websocket.DefaultDialer.Dial(url+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "4 sessions", 10*time.Second, func() bool { return r.Sessions("") == 4 })
	want := []SessionCount{{"a", "h1", 2}, {"b", "h1", 2}}
	if got := r.Breakdown(); !slices.Equal(got, want) {
		t.Fatalf("Breakdown() = %v; want %v", got, want)
	}
	// With no backend ready, a's sessions wait between backends.
	rt.set()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Drain(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	want = []SessionCount{{"", "h1", 2}, {"b", "h1", 2}}
	if got := r.Breakdown(); !slices.Equal(got, want) {
		t.Fatalf("after draining a with no backend ready: Breakdown() = %v; want %v", got, want)
	}
	rt.set(b)
	waitFor(t, "the waiting sessions on b", 20*time.Second, func() bool { return r.Sessions("b") == 4 })
	want = []SessionCount{{"b", "h1", 4}}
	if got := r.Breakdown(); !slices.Equal(got, want) {
		t.Fatalf("after b came back: Breakdown() = %v; want %v", got, want)
	}
}
