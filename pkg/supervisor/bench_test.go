package supervisor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
)

// BenchmarkReload measures a whole reload of n workers of the test app
// (start to old generation gone) and the toolkit's own share of it: the
// total minus the time workers spent getting ready (spawn event to ready
// event, which includes the exec shim) and draining (stop signal to exit).
// For blue-green the waits overlap, so the longest of each is subtracted.
func BenchmarkReload(b *testing.B) {
	for _, strategy := range []string{runapi.StrategyRolling, runapi.StrategyBlueGreen} {
		for _, n := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/workers=%d", strategy, n), func(b *testing.B) {
				h := start(&testing.T{}, n, nil, nil)
				defer func() {
					h.s.Stop(false)
					<-h.done
					h.done <- nil
				}()
				for h.s.Status().Health != runapi.HealthHealthy {
					time.Sleep(5 * time.Millisecond)
				}
				b.ReportAllocs()
				var total, overhead time.Duration
				for b.Loop() {
					events, unsub := h.s.Subscribe()
					t0 := time.Now()
					if _, err := h.s.Reload(context.Background(), runapi.ReloadArgs{Strategy: strategy}); err != nil {
						b.Fatal(err)
					}
					d := time.Since(t0)
					unsub()
					ready, drain := waits(events, strategy)
					total += d
					overhead += d - ready - drain
				}
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "reload-ms/op")
				b.ReportMetric(float64(overhead.Microseconds())/1000/float64(b.N), "overhead-ms/op")
			})
		}
	}
}

// waits sums (rolling) or takes the longest of (blue-green) the readiness
// and drain waits seen in the events of one reload.
func waits(events <-chan runapi.Event, strategy string) (ready, drain time.Duration) {
	spawned, stopped := map[int]int64{}, map[int]int64{}
	var readies, drains []time.Duration
	for {
		select {
		case e := <-events:
			switch e.Kind {
			case "spawn":
				spawned[e.PID] = e.TimeUnixMS
			case "ready":
				if t, ok := spawned[e.PID]; ok {
					readies = append(readies, time.Duration(e.TimeUnixMS-t)*time.Millisecond)
				}
			case "stop":
				stopped[e.PID] = e.TimeUnixMS
			case "exit":
				if t, ok := stopped[e.PID]; ok {
					drains = append(drains, time.Duration(e.TimeUnixMS-t)*time.Millisecond)
				}
			}
			continue
		default:
		}
		break
	}
	agg := func(ds []time.Duration) time.Duration {
		var sum, longest time.Duration
		for _, d := range ds {
			sum += d
			longest = max(longest, d)
		}
		if strategy == runapi.StrategyBlueGreen {
			return longest
		}
		return sum
	}
	return agg(readies), agg(drains)
}
