package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestPassThroughAndPacing(t *testing.T) {
	b := New(Limits{ReplayConcurrency: 2, MaxCount: 1})
	defer b.Close()
	// Not paused, slots free: released at once, and never counted against
	// MaxCount.
	a, c := NewTicket(0, nil, "", "a"), NewTicket(0, nil, "", "c")
	for _, tk := range []*Ticket{a, c} {
		if err := b.Push(tk); err != nil {
			t.Fatalf("Push(%v) = %v; want nil", tk.Meta(), err)
		}
		if !decided(tk) || !waitOutcome(t, tk).Released {
			t.Fatalf("ticket %v not released at once", tk.Meta())
		}
	}
	// Both slots taken: the next one is held, the one after that overflows.
	d, e := NewTicket(0, nil, "", "d"), NewTicket(0, nil, "", "e")
	if err := b.Push(d); err != nil || decided(d) {
		t.Fatalf("Push(d) = %v, decided %v; want held", err, decided(d))
	}
	if err := b.Push(e); !errors.Is(err, ErrFull) {
		t.Fatalf("Push(e) = %v; want ErrFull", err)
	}
	a.Done()
	a.Done() // a second Done must not free a second slot
	if !waitOutcome(t, d).Released {
		t.Fatal("d not released after a.Done")
	}
	s := b.Stats()
	if s.InFlight != 2 || s.ReleasedTotal != 3 || s.ReplayedTotal != 1 {
		t.Errorf("Stats() in flight %d released %d replayed %d; want 2, 3, 1", s.InFlight, s.ReleasedTotal, s.ReplayedTotal)
	}
	c.Done()
	d.Done()
	checkEmpty(t, b)
}

func TestReplayIsPaced(t *testing.T) {
	const k, n = 3, 20
	b := New(Limits{ReplayConcurrency: k})
	defer b.Close()
	b.Pause()
	tickets, _ := pushAll(b, repeat(n, 0), nil, nil)
	b.Resume()
	for i := range n {
		released := 0
		for _, tk := range tickets {
			if decided(tk) && tk.outcome.Released && tk.state == stateReleased {
				released++
			}
		}
		if want := min(k, n-i); released != want {
			t.Fatalf("step %d: %d released and not done; want %d", i, released, want)
		}
		tickets[i].Done()
	}
	checkEmpty(t, b)
	b.SetReplayConcurrency(0)
	if got := b.Stats().ReplayConcurrency; got != DefaultReplayConcurrency {
		t.Errorf("ReplayConcurrency after SetReplayConcurrency(0) = %d; want %d", got, DefaultReplayConcurrency)
	}
}

func TestSetReplayConcurrencyReleasesMore(t *testing.T) {
	b := New(Limits{ReplayConcurrency: 1})
	defer b.Close()
	b.Pause()
	tickets, _ := pushAll(b, repeat(5, 0), nil, nil)
	b.Resume()
	if !decided(tickets[0]) || decided(tickets[1]) {
		t.Fatal("want exactly the first ticket released")
	}
	b.SetReplayConcurrency(5)
	for i, tk := range tickets {
		if !decided(tk) {
			t.Errorf("ticket %d not released after raising concurrency", i)
		}
		tk.Done()
	}
}

func TestPinnedBackends(t *testing.T) {
	b := New(Limits{})
	defer b.Close()
	b.PauseBackend("w1")
	if !b.BackendPaused("w1") || b.BackendPaused("w2") || b.Paused() {
		t.Fatal("pause state wrong after PauseBackend(w1)")
	}
	prios := []int{0, 0, 5, 1, 0}
	backends := []string{"w1", "", "w1", "w2", "w1"}
	tickets, _ := pushAll(b, prios, nil, func(i int) string { return backends[i] })
	// Unpinned and pinned-to-unpaused go straight through.
	for _, i := range []int{1, 3} {
		if !decided(tickets[i]) {
			t.Errorf("ticket %d (backend %q) held; want released", i, backends[i])
		}
		tickets[i].Done()
	}
	for _, i := range []int{0, 2, 4} {
		if decided(tickets[i]) {
			t.Errorf("ticket %d pinned to paused w1 released", i)
		}
	}
	if s := b.Stats(); s.Held != 3 || s.HeldByBackend["w1"] != 3 || s.HeldByPriority["5"] != 1 || s.HeldByPriority["0"] != 2 {
		t.Errorf("Stats() = %+v; want 3 held on w1 (1 at priority 5, 2 at 0)", s)
	}
	// Global pause holds pinned tickets too, even of a resumed backend.
	b.Pause()
	b.ResumeBackend("w1")
	for _, i := range []int{0, 2, 4} {
		if decided(tickets[i]) {
			t.Errorf("ticket %d released while globally paused", i)
		}
	}
	_, order := collect(t, []*Ticket{tickets[0], tickets[2], tickets[4]}, b.Resume)
	if len(order) != 3 {
		t.Errorf("released %v; want all three", order)
	}
	checkEmpty(t, b)
}

func TestPinnedAndGlobalInterleave(t *testing.T) {
	b := New(Limits{ReplayConcurrency: 1})
	defer b.Close()
	b.Pause()
	prios := []int{1, 1, 3, 1, 3, 0}
	backends := []string{"", "w1", "w2", "", "", "w1"}
	tickets, _ := pushAll(b, prios, nil, func(i int) string { return backends[i] })
	got := releaseOrder(t, b, tickets)
	if want := "[2 4 0 1 3 5]"; fmt.Sprint(got) != want {
		t.Errorf("release order %v; want %s", got, want)
	}
}

// releaseOrder resumes b (which must have ReplayConcurrency 1) and returns
// the order in which tickets are released.
func releaseOrder(t *testing.T, b *Buffer, tickets []*Ticket) []int {
	t.Helper()
	b.Resume()
	var got []int
	for range tickets {
		next := -1
		for i, tk := range tickets {
			if decided(tk) && tk.state == stateReleased {
				next = i
			}
		}
		if next < 0 {
			t.Fatalf("nothing released after %v", got)
		}
		got = append(got, next)
		tickets[next].Done()
	}
	return got
}

func TestDropBackendUnpins(t *testing.T) {
	b := New(Limits{ReplayConcurrency: 1})
	defer b.Close()
	b.Pause()
	b.PauseBackend("old")
	prios := []int{2, 2, 2, 7, 2, 0}
	backends := []string{"", "old", "", "old", "", "old"}
	tickets, _ := pushAll(b, prios, nil, func(i int) string { return backends[i] })
	if n := b.DropBackend("old"); n != 3 {
		t.Errorf("DropBackend = %d; want 3", n)
	}
	if b.BackendPaused("old") {
		t.Error("old still paused after DropBackend")
	}
	for i, tk := range tickets {
		if tk.Backend() != "" {
			t.Errorf("ticket %d Backend() = %q; want unpinned", i, tk.Backend())
		}
	}
	if n := b.DropBackend("old"); n != 0 {
		t.Errorf("second DropBackend = %d; want 0", n)
	}
	got := releaseOrder(t, b, tickets)
	if want := "[3 0 1 2 4 5]"; fmt.Sprint(got) != want {
		t.Errorf("release order %v; want %s (merged by priority, then push order)", got, want)
	}
	checkEmpty(t, b)
}

func TestCancelFreesBytes(t *testing.T) {
	b := New(Limits{MaxBytes: 10_000, EntryOverhead: 100})
	defer b.Close()
	b.Pause()
	keep := NewTicket(0, make([]byte, 500), "", "keep")
	gone := NewTicket(0, make([]byte, 700), "w1", "gone")
	for _, tk := range []*Ticket{keep, gone} {
		if err := b.Push(tk); err != nil {
			t.Fatal(err)
		}
	}
	if s := b.Stats(); s.Bytes != 1400 || s.RawBytes != 1200 {
		t.Fatalf("Stats() bytes %d raw %d; want 1400, 1200", s.Bytes, s.RawBytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, err := gone.Wait(ctx)
	if !errors.Is(err, context.Canceled) || out.Released {
		t.Fatalf("Wait(cancelled ctx) = %+v, %v; want context.Canceled", out, err)
	}
	s := b.Stats()
	if s.Held != 1 || s.Bytes != 600 || s.RawBytes != 500 || len(s.HeldByBackend) != 0 || s.Rejected["cancelled"] != 1 {
		t.Errorf("Stats() = %+v; want only keep held (600 bytes), w1's queue gone, 1 cancelled", s)
	}
	// Cancelling again, or after the outcome, changes nothing.
	if _, err := gone.Wait(ctx); err == nil {
		t.Error("second Wait(cancelled ctx) = nil error")
	}
	b.Resume()
	if !waitOutcome(t, keep).Released {
		t.Fatal("keep not released")
	}
	keep.Done()
	checkEmpty(t, b)
}

func TestAbandonReleasedGivesSlotBack(t *testing.T) {
	b := New(Limits{ReplayConcurrency: 1})
	defer b.Close()
	b.Pause()
	tickets, _ := pushAll(b, repeat(2, 0), nil, nil)
	b.Resume()
	if !decided(tickets[0]) || decided(tickets[1]) {
		t.Fatal("want only the first released")
	}
	// The client of the released ticket leaves instead of calling Done.
	if _, decided := b.abandon(tickets[0]); decided {
		t.Fatal("abandon of a released ticket reported a rejection")
	}
	if !decided(tickets[1]) {
		t.Fatal("slot of the abandoned ticket not given back")
	}
	tickets[0].Done() // no-op now
	tickets[1].Done()
	if s := b.Stats(); s.AbandonedTotal != 1 || s.InFlight != 0 {
		t.Errorf("Stats() abandoned %d in flight %d; want 1, 0", s.AbandonedTotal, s.InFlight)
	}
}

func TestFlushAndClose(t *testing.T) {
	b := New(Limits{MaxAge: DefaultMaxAge, Overflow: Compress})
	b.Pause()
	first, _ := pushAll(b, []int{0, 3, 1}, compressible(300), func(i int) string { return []string{"", "w", ""}[i] })
	if n := b.Flush(); n != 3 {
		t.Errorf("Flush() = %d; want 3", n)
	}
	for i, tk := range first {
		if out := waitOutcome(t, tk); out.Released || out.Reason != ReasonFlushed {
			t.Errorf("ticket %d: outcome %+v; want flushed", i, out)
		}
	}
	checkEmpty(t, b)
	if n := b.Flush(); n != 0 {
		t.Errorf("Flush() on empty = %d; want 0", n)
	}

	// A released ticket survives Close and may still call Done and Body.
	b.Resume()
	running := NewTicket(0, []byte("in flight"), "", nil)
	if err := b.Push(running); err != nil || !waitOutcome(t, running).Released {
		t.Fatalf("Push(running) = %v; want released", err)
	}
	b.Pause()
	second, _ := pushAll(b, repeat(4, 0), nil, nil)
	if n := b.Close(); n != 4 {
		t.Errorf("Close() = %d; want 4", n)
	}
	for i, tk := range second {
		if out := waitOutcome(t, tk); out.Reason != ReasonShutdown {
			t.Errorf("ticket %d: outcome %+v; want shutdown", i, out)
		}
	}
	if body, err := running.Body(); err != nil || string(body) != "in flight" {
		t.Errorf("Body() after Close = %q, %v", body, err)
	}
	running.Done()
	late := NewTicket(0, nil, "", nil)
	if err := b.Push(late); !errors.Is(err, ErrClosed) {
		t.Errorf("Push after Close = %v; want ErrClosed", err)
	}
	if out := waitOutcome(t, late); out.Reason != ReasonShutdown {
		t.Errorf("outcome after Close %+v; want shutdown", out)
	}
	if n := b.Close(); n != 0 {
		t.Errorf("second Close() = %d; want 0", n)
	}
	s := b.Stats()
	if s.Rejected["flushed"] != 3 || s.Rejected["shutdown"] != 5 || s.InFlight != 0 {
		t.Errorf("Stats() = %+v; want 3 flushed, 5 shutdown, nothing in flight", s)
	}
}

func TestPushTwice(t *testing.T) {
	b := New(Limits{})
	defer b.Close()
	tk := NewTicket(0, nil, "", nil)
	if err := b.Push(tk); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(tk); !errors.Is(err, ErrReused) {
		t.Errorf("second Push = %v; want ErrReused", err)
	}
	other := New(Limits{})
	defer other.Close()
	if err := other.Push(tk); !errors.Is(err, ErrReused) {
		t.Errorf("Push to another buffer = %v; want ErrReused", err)
	}
	tk.Done()
}

func TestLimitsOnlyApplyToHeld(t *testing.T) {
	b := New(Limits{MaxBytes: 100, MaxCount: 1})
	defer b.Close()
	big := NewTicket(0, make([]byte, 1000), "", nil)
	if err := b.Push(big); err != nil || !waitOutcome(t, big).Released {
		t.Fatalf("Push(big body, not paused) = %v; want released at once", err)
	}
	big.Done()
	b.Pause()
	again := NewTicket(0, make([]byte, 1000), "", nil)
	var le *LimitError
	if err := b.Push(again); !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || le.Need != 1000+DefaultEntryOverhead {
		t.Fatalf("Push(big body, paused) = %v; want ErrTooLarge needing %d", err, 1000+DefaultEntryOverhead)
	}
	if out := waitOutcome(t, again); out.Reason != ReasonTooLarge {
		t.Errorf("outcome %+v; want too_large", out)
	}
}

func TestStatsJSON(t *testing.T) {
	b := New(Limits{})
	defer b.Close()
	b.Pause()
	b.PauseBackend("w2")
	pushAll(b, []int{3, 3, -1}, nil, func(i int) string { return []string{"", "w2", ""}[i] })
	data, err := json.Marshal(b.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"held":3`, `"held_by_priority":{"-1":1,"3":2}`, `"held_by_backend":{"w2":1}`,
		`"paused":true`, `"paused_backends":["w2"]`, `"evicted":0`, `"bytes":3072`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("Stats JSON %s; want it to contain %s", data, want)
		}
	}
}

func TestErrorWording(t *testing.T) {
	b := New(Limits{MaxCount: 1, MaxBytes: 2000, EntryOverhead: 100})
	defer b.Close()
	b.Pause()
	tk := NewTicket(7, make([]byte, 10), "", nil)
	if err := b.Push(tk); err != nil {
		t.Fatal(err)
	}
	if tk.Priority() != 7 || tk.Size() != 10 || b.Limits().MaxCount != 1 {
		t.Errorf("Priority %d Size %d Limits %+v; want 7, 10, MaxCount 1", tk.Priority(), tk.Size(), b.Limits())
	}
	tests := []struct {
		body int
		want string
	}{
		{10, "request buffer full: count limit 1 reached (holding 1, request needs 1, overflow strategy reject)"},
		{5000, "request body larger than the whole request buffer: needs 5100 bytes, buffer limit is 2000 bytes"},
	}
	for _, tc := range tests {
		err := b.Push(NewTicket(0, make([]byte, tc.body), "", nil))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Push(%d bytes) = %v; want %q", tc.body, err, tc.want)
		}
	}
	if got := Reason(200).String(); got != "reason(200)" {
		t.Errorf("Reason(200).String() = %q", got)
	}
	if got := Overflow(9).String(); got != "overflow(9)" {
		t.Errorf("Overflow(9).String() = %q", got)
	}
}
