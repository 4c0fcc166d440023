package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrent runs many clients pushing, waiting, leaving and finishing
// while an operator pauses, resumes, flushes and drops backends, then checks
// that every ticket got exactly one outcome and every counter agrees with
// what the clients saw. Run it with -race.
func TestConcurrent(t *testing.T) {
	for _, ov := range []Overflow{Reject, Oldest, Compress} {
		t.Run(ov.String(), func(t *testing.T) {
			t.Parallel()
			testConcurrent(t, ov)
		})
	}
}

func testConcurrent(t *testing.T, ov Overflow) {
	const clients, perClient = 32, 150
	b := New(Limits{MaxCount: 20, MaxBytes: 8000, EntryOverhead: 100, MaxAge: 20 * time.Millisecond,
		Overflow: ov, ReplayConcurrency: 4})
	defer b.Close()
	backends := []string{"", "", "w1", "w2"}

	var (
		mu       sync.Mutex
		released int
		ctxErrs  int
		reasons  = map[Reason]int{}
		wg       sync.WaitGroup
		finished atomic.Int64
	)
	stop := make(chan struct{})
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for i := range perClient {
				body := bytes.Repeat([]byte{byte('a' + i%26)}, r.IntN(1000))
				tk := NewTicket(r.IntN(7)-3, body, backends[r.IntN(len(backends))], nil)
				leaves := r.IntN(5) == 0
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if leaves {
					cancel()
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(r.IntN(2000))*time.Microsecond)
				}
				_ = b.Push(tk) // the outcome is checked through Wait
				out, err := tk.Wait(ctx)
				cancel()
				finished.Add(1)
				mu.Lock()
				switch {
				case err != nil && !leaves:
					mu.Unlock()
					t.Errorf("client %d ticket %d: Wait = %v; want an outcome (hung?)", c, i, err)
					return
				case err != nil:
					ctxErrs++
				case out.Released:
					released++
				default:
					reasons[out.Reason]++
				}
				mu.Unlock()
				if err == nil && out.Released {
					got, berr := tk.Body()
					if berr != nil || !bytes.Equal(got, body) {
						t.Errorf("Body() = %d bytes, %v; want the %d bytes pushed", len(got), berr, len(body))
					}
					if r.IntN(3) == 0 {
						time.Sleep(time.Duration(r.IntN(100)) * time.Microsecond) // the backend works
					}
					tk.Done()
				}
			}
		}()
	}
	var opWG sync.WaitGroup
	opWG.Add(1)
	go func() {
		defer opWG.Done()
		r := rand.New(rand.NewPCG(99, 1))
		for i := 0; i < 100_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch r.IntN(9) {
			case 0, 1:
				b.Pause()
			case 2, 3:
				b.Resume()
			case 4:
				b.PauseBackend(backends[2+r.IntN(2)])
			case 5:
				b.ResumeBackend(backends[2+r.IntN(2)])
			case 6:
				b.DropBackend(backends[2+r.IntN(2)])
			case 7:
				if r.IntN(20) == 0 {
					b.Flush()
				}
			case 8:
				b.SetReplayConcurrency(1 + r.IntN(8))
				_ = b.Stats()
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	// The operator stops once half the clients' work is done, then
	// everything must drain on its own.
	eventually(t, "half the tickets", func() bool { return finished.Load() >= clients*perClient/2 })
	close(stop)
	opWG.Wait()
	b.Resume()
	b.ResumeBackend("w1")
	b.ResumeBackend("w2")
	wg.Wait()

	s := b.Stats()
	checkEmpty(t, b)
	if got := released + ctxErrs + sum(reasons); got != clients*perClient {
		t.Errorf("outcomes %d; want %d", got, clients*perClient)
	}
	if s.ReleasedTotal != uint64(released)+s.AbandonedTotal {
		t.Errorf("ReleasedTotal %d; want released %d + abandoned %d", s.ReleasedTotal, released, s.AbandonedTotal)
	}
	if s.Rejected["cancelled"]+s.AbandonedTotal != uint64(ctxErrs) {
		t.Errorf("cancelled %d + abandoned %d; want %d clients that left", s.Rejected["cancelled"], s.AbandonedTotal, ctxErrs)
	}
	var accepted uint64 = s.ReleasedTotal + s.Rejected["cancelled"]
	for r := ReasonOverflow; r < ReasonCancelled; r++ {
		if s.Rejected[r.String()] != uint64(reasons[r]) {
			t.Errorf("Rejected[%s] = %d; clients saw %d", r, s.Rejected[r.String()], reasons[r])
		}
		if r != ReasonOverflow && r != ReasonTooLarge && r != ReasonShutdown {
			accepted += uint64(reasons[r])
		}
	}
	if s.PushedTotal != accepted {
		t.Errorf("PushedTotal %d; want %d (released + rejected after acceptance)", s.PushedTotal, accepted)
	}
	if s.PeakHeld > 20 || s.PeakBytes > 8000 {
		t.Errorf("peak held %d bytes %d; over the limits", s.PeakHeld, s.PeakBytes)
	}
	t.Logf("%v: released %d, left %d, rejected %v, compressed %d", ov, released, ctxErrs, reasons, s.CompressedTotal)
}

func sum(m map[Reason]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
