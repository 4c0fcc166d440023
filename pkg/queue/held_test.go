package queue

import (
	"context"
	"testing"
	"time"
)

// TestAppendHeld: AppendHeld lists the held tickets oldest first, with
// their meta and pins, and no longer lists one that left.
func TestAppendHeld(t *testing.T) {
	b := New(Limits{})
	defer b.Close()
	b.Pause()
	var tks []*Ticket
	for i, pin := range []string{"", "b1", ""} {
		tk := NewTicket(i, []byte{byte('a' + i)}, pin, i)
		if err := b.Push(tk); err != nil {
			t.Fatal(err)
		}
		tks = append(tks, tk)
	}
	got := b.AppendHeld([]*Ticket{nil})
	if len(got) != 4 || got[0] != nil || got[1] != tks[0] || got[2] != tks[1] || got[3] != tks[2] {
		t.Fatalf("AppendHeld([nil]) = %v; want nil then the 3 tickets in push order", got)
	}
	if got[2].Meta() != 1 || got[2].Backend() != "b1" || got[2].Priority() != 1 {
		t.Errorf("second ticket: meta %v, backend %q, priority %d; want 1, b1, 1", got[2].Meta(), got[2].Backend(), got[2].Priority())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tks[1].Wait(ctx); err == nil {
		t.Fatal("Wait with an ended context: no error")
	}
	if got := b.AppendHeld(nil); len(got) != 2 || got[0] != tks[0] || got[1] != tks[2] {
		t.Fatalf("after the second left: AppendHeld(nil) = %v; want the first and third", got)
	}
	b.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.AppendHeld(nil)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("tickets still held 10s after Resume")
		}
		time.Sleep(time.Millisecond)
	}
}
