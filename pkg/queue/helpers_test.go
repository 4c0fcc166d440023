package queue

import (
	"context"
	"sync"
	"testing"
	"time"
)

// result is what one waiter saw.
type result struct {
	out Outcome
	err error
}

// collect waits for every ticket in its own goroutine, calls Done on the
// released ones and returns their results in ticket order, plus the order
// in which tickets were released (by index). Every wait is bounded.
func collect(t *testing.T, tickets []*Ticket, afterStart func()) ([]result, []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := make([]result, len(tickets))
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i, tk := range tickets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := tk.Wait(ctx)
			res[i] = result{out, err}
			if err == nil && out.Released {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				tk.Done()
			}
		}()
	}
	if afterStart != nil {
		afterStart()
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("ticket %d: Wait = %v; want an outcome before the deadline", i, r.err)
		}
	}
	return res, order
}

// pushAll creates and pushes one ticket per priority with body, returning
// the tickets and the Push errors.
func pushAll(b *Buffer, prios []int, body func(i int) []byte, backend func(i int) string) ([]*Ticket, []error) {
	tickets := make([]*Ticket, len(prios))
	errs := make([]error, len(prios))
	for i, p := range prios {
		var bd []byte
		if body != nil {
			bd = body(i)
		}
		var be string
		if backend != nil {
			be = backend(i)
		}
		tickets[i] = NewTicket(p, bd, be, i)
		errs[i] = b.Push(tickets[i])
	}
	return tickets, errs
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkEmpty fails unless b holds nothing and has nothing in flight.
func checkEmpty(t *testing.T, b *Buffer) {
	t.Helper()
	s := b.Stats()
	if s.Held != 0 || s.Bytes != 0 || s.RawBytes != 0 || s.StoredBytes != 0 || s.InFlight != 0 || len(s.HeldByPriority) != 0 || len(s.HeldByBackend) != 0 {
		t.Errorf("Stats() = %+v; want nothing held or in flight", s)
	}
}

func repeat(n int, v int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}
