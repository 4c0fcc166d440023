package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkPush measures the enqueue rate into a paused buffer (NewTicket +
// Push, body already read). Run with -cpu 1 for the single-core figure.
func BenchmarkPush(b *testing.B) {
	for _, size := range []int{0, 1024, 16 << 10} {
		for _, mixed := range []bool{false, true} {
			name := fmt.Sprintf("body=%d/prio=one", size)
			if mixed {
				name = fmt.Sprintf("body=%d/prio=mixed", size)
			}
			b.Run(name, func(b *testing.B) {
				body := make([]byte, size)
				q := New(Limits{})
				defer q.Close()
				q.Pause()
				prios := make([]int, 1024)
				r := rand.New(rand.NewPCG(1, 2))
				for i := range prios {
					if mixed {
						prios[i] = r.IntN(21) - 10
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				var cpu time.Duration
				start := cpuTime()
				for i := 0; i < b.N; i++ {
					if i%100_000 == 99_999 {
						b.StopTimer()
						cpu += cpuTime() - start
						q.Flush()
						start = cpuTime()
						b.StartTimer()
					}
					if err := q.Push(NewTicket(prios[i%len(prios)], body, "", nil)); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cpu += cpuTime() - start
				reportRates(b, b.N, cpu, "push")
			})
		}
	}
}

// BenchmarkPushParallel is BenchmarkPush from every CPU at once: the cost
// of contention on the buffer's mutex.
func BenchmarkPushParallel(b *testing.B) {
	q := New(Limits{MaxCount: 100_000, Overflow: Oldest})
	defer q.Close()
	q.Pause()
	b.ReportAllocs()
	start := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := q.Push(NewTicket(0, nil, "", nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
	reportRates(b, b.N, cpuTime()-start, "push")
}

// BenchmarkMemoryPerTicket measures the heap a held ticket costs beyond its
// own body bytes: heap growth over n held tickets, minus the bodies, over n.
func BenchmarkMemoryPerTicket(b *testing.B) {
	const n = 100_000
	for _, size := range []int{0, 1024} {
		for _, pinned := range []bool{false, true} {
			b.Run(fmt.Sprintf("n=%d/body=%d/pinned=%v", n, size, pinned), func(b *testing.B) {
				var perTicket float64
				for range b.N {
					q := New(Limits{MaxAge: time.Hour})
					q.Pause()
					backend := ""
					if pinned {
						backend = "w1"
						q.PauseBackend(backend)
					}
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					for i := range n {
						var body []byte
						if size > 0 {
							body = make([]byte, size)
						}
						if err := q.Push(NewTicket(i%7, body, backend, nil)); err != nil {
							b.Fatal(err)
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					if q.Stats().Held != n {
						b.Fatal("not all held")
					}
					perTicket = (float64(after.HeapAlloc) - float64(before.HeapAlloc) - float64(n*size)) / n
					q.Close()
				}
				b.ReportMetric(perTicket, "B/ticket")
			})
		}
	}
}

// BenchmarkReleaseOrder measures resuming a paused buffer of n tickets with
// mixed priorities and releasing all of them in priority order, paced at 64
// in flight (each released ticket is checked against the expected order and
// Done at once), or all at once.
func BenchmarkReleaseOrder(b *testing.B) {
	for _, n := range []int{500, 5000, 50_000} {
		for _, conc := range []int{64, n} {
			b.Run(fmt.Sprintf("n=%d/concurrency=%d", n, conc), func(b *testing.B) {
				r := rand.New(rand.NewPCG(3, 4))
				prios := make([]int, n)
				for i := range prios {
					prios[i] = r.IntN(21) - 10
				}
				b.ReportAllocs()
				b.ResetTimer()
				var cpu time.Duration
				for range b.N {
					b.StopTimer()
					q := New(Limits{ReplayConcurrency: conc})
					q.Pause()
					tickets, _ := pushAll(q, prios, nil, nil)
					want := expectedOrder(tickets)
					start := cpuTime()
					b.StartTimer()
					q.Resume()
					for _, tk := range want {
						select {
						case <-tk.done:
						default:
							b.Fatalf("ticket %v (priority %d) not released in its turn", tk.Meta(), tk.prio)
						}
						tk.Done()
					}
					b.StopTimer()
					cpu += cpuTime() - start
					q.Close()
				}
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
			})
		}
	}
}

// expectedOrder sorts tickets by priority (high first), then push order.
func expectedOrder(tickets []*Ticket) []*Ticket {
	byPrio := make([][]*Ticket, numBuckets)
	for _, tk := range tickets {
		i := bucketOf(tk.prio)
		byPrio[i] = append(byPrio[i], tk)
	}
	var out []*Ticket
	for i := numBuckets - 1; i >= 0; i-- {
		out = append(out, byPrio[i]...)
	}
	return out
}

// BenchmarkReplay measures the replay rate the origin reports: n clients
// wait in a paused buffer, one goroutine each, then Resume releases them,
// paced at 64 in flight; each client calls Done when it wakes. Reported as
// tickets replayed per second, from Resume to the last Done.
func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var total, cpu time.Duration
			for range b.N {
				b.StopTimer()
				q := New(Limits{})
				q.Pause()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var wg sync.WaitGroup
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tk := NewTicket(i%5, nil, "", nil)
						if err := q.Push(tk); err != nil {
							b.Error(err)
							return
						}
						if out, err := tk.Wait(ctx); err != nil || !out.Released {
							b.Errorf("Wait = %+v, %v", out, err)
							return
						}
						tk.Done()
					}()
				}
				for deadline := time.Now().Add(time.Minute); q.Stats().Held < n; {
					if time.Now().After(deadline) {
						b.Fatal("clients never all held")
					}
					runtime.Gosched()
				}
				b.StartTimer()
				start, startCPU := time.Now(), cpuTime()
				q.Resume()
				wg.Wait()
				total += time.Since(start)
				cpu += cpuTime() - startCPU
				b.StopTimer()
				cancel()
				q.Close()
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "replayed/s")
			b.ReportMetric(float64(n*b.N)/cpu.Seconds(), "replayed/cpu-s")
		})
	}
}

// BenchmarkCycle measures the full push → release → Done cycle of an
// unpaused buffer from every CPU at once (the pass-through path with pacing).
func BenchmarkCycle(b *testing.B) {
	q := New(Limits{ReplayConcurrency: 64})
	defer q.Close()
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk := NewTicket(0, nil, "", nil)
			if err := q.Push(tk); err != nil {
				b.Fatal(err)
			}
			if _, err := tk.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			tk.Done()
		}
	})
	reportRates(b, b.N, cpuTime()-start, "cycle")
}

// BenchmarkPushFull measures Push into a paused buffer that is already at
// its limit, so every Push applies the overflow strategy: Reject refuses
// it, Oldest evicts one held ticket, Compress compresses held bodies until
// none is left to compress and then refuses.
func BenchmarkPushFull(b *testing.B) {
	const held = 10_000
	body := compressible(1024)(0)
	for _, ov := range []Overflow{Reject, Oldest, Compress} {
		b.Run(fmt.Sprintf("overflow=%v/held=%d/body=%d", ov, held, len(body)), func(b *testing.B) {
			q := New(Limits{MaxCount: held, MaxBytes: held * (1024 + DefaultEntryOverhead), Overflow: ov})
			defer q.Close()
			q.Pause()
			for range held {
				if err := q.Push(NewTicket(0, body, "", nil)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := cpuTime()
			for range b.N {
				_ = q.Push(NewTicket(0, body, "", nil))
			}
			b.StopTimer()
			reportRates(b, b.N, cpuTime()-start, "push")
			if s := q.Stats(); s.Held > held {
				b.Fatalf("held %d; over the limit", s.Held)
			}
		})
	}
}

// BenchmarkParsePriority measures the per-request header parsing.
func BenchmarkParsePriority(b *testing.B) {
	names := DefaultPriorityHeaders()
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"none", http.Header{"Accept": {"*/*"}}},
		{"all", http.Header{"X-Priority": {"3"}, "X-Urgent": {"true"}, "X-Critical": {"no"}}},
	} {
		b.Run("headers="+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				_ = ParsePriority(tc.h, names)
			}
		})
	}
}

// reportRates reports n operations as a wall-clock rate ("push/s") and as a
// rate per CPU-second of the whole process ("push/cpu-s"), which the load
// of other processes on a shared machine does not dilute.
func reportRates(b *testing.B, n int, cpu time.Duration, unit string) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unit+"/s")
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), unit+"/cpu-s")
	}
}
