package queue

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// waitOutcome waits for t with a bound, failing the test if it is hit.
func waitOutcome(t *testing.T, tk *Ticket) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := tk.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait(ticket %v) = %v; want an outcome", tk.Meta(), err)
	}
	return out
}

// decided reports whether tk has an outcome, without blocking.
func decided(tk *Ticket) bool {
	select {
	case <-tk.done:
		return true
	default:
		return false
	}
}

func TestReleaseOrder(t *testing.T) {
	tests := []struct {
		name  string
		prios []int // push order; meta is the index
		want  []int // release order of indexes
	}{
		{"fifo one priority", []int{0, 0, 0, 0}, []int{0, 1, 2, 3}},
		{"higher first", []int{1, 5, 3}, []int{1, 2, 0}},
		{"fifo within priority", []int{1, 2, 1, 2, 1}, []int{1, 3, 0, 2, 4}},
		{"negative and clamped", []int{-100, 0, 100, 31, -32}, []int{2, 3, 1, 0, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Limits{ReplayConcurrency: 1})
			defer b.Close()
			b.Pause()
			tickets := make([]*Ticket, len(tc.prios))
			for i, p := range tc.prios {
				tickets[i] = NewTicket(p, []byte("body"), "", i)
				if err := b.Push(tickets[i]); err != nil {
					t.Fatalf("Push(%d) = %v; want nil", i, err)
				}
			}
			b.Resume()
			var got []int
			for range tc.prios {
				var rel *Ticket
				for _, tk := range tickets {
					if decided(tk) && tk.state == stateReleased {
						rel = tk
					}
				}
				if rel == nil {
					t.Fatalf("no ticket released after %v", got)
				}
				if out := waitOutcome(t, rel); !out.Released {
					t.Fatalf("outcome %+v; want released", out)
				}
				got = append(got, rel.Meta().(int))
				rel.Done()
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("release order %v; want %v", got, tc.want)
			}
		})
	}
}
