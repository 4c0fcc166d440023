package zdqueue

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// zd-queue's soft memory limit (unless GOMEMLIMIT is set) bounds the
// garbage an upload flood leaves: at 2x the buffer plus 48 MiB the
// collector works harder rather than let the heap grow to GOGC's several
// times the live set. But a limit under what zd-queue really uses (its
// live heap and its goroutines' stacks) makes the collector run back to
// back, up to half the CPU: 10,000 WebSocket sessions (56 MiB of heap, 26
// MiB of stacks) against the default 68 MiB had it collecting 44% of the
// time and stalling sessions for ~100 ms (pkg/snapshot/BENCH.md). So the
// limit follows what the last collection found in use: never under twice
// it, i.e. never more collections than GOGC=100 would make.

// memLimit is the soft limit for floor (the buffer's bound) and inUse.
func memLimit(floor, inUse int64) int64 { return max(floor, 2*inUse) }

// The runtime/metrics samples memInUse reads, in this order.
var memSampleNames = [...]string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// memInUse is what zd-queue's memory holds that is not garbage: the heap
// marked live by the last collection, and everything outside the heap
// (goroutine stacks, the runtime's own structures): the total less the
// heap's four classes.
func memInUse(s []metrics.Sample) int64 {
	metrics.Read(s)
	var v [len(memSampleNames)]int64
	for i := range v {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = int64(s[i].Value.Uint64())
		}
	}
	nonHeap := v[1] - v[2] - v[3] - v[4] - v[5]
	return v[0] + max(nonHeap, 0)
}

func memSamples() []metrics.Sample {
	s := make([]metrics.Sample, len(memSampleNames))
	for i, n := range memSampleNames {
		s[i].Name = n
	}
	return s
}

// governMemory keeps the soft memory limit at memLimit(floor, in use),
// looking every interval, until ctx ends.
func governMemory(ctx context.Context, floor int64, every time.Duration) {
	s := memSamples()
	cur := floor
	debug.SetMemoryLimit(cur)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Changes under 1/16 are not worth a call: the limit is soft.
		if want := memLimit(floor, memInUse(s)); want > cur+cur/16 || want < cur-cur/16 {
			cur = want
			debug.SetMemoryLimit(cur)
		}
	}
}
