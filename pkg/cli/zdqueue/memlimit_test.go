package zdqueue

import (
	"runtime"
	"testing"
)

func TestMemLimit(t *testing.T) {
	const floor = 68 << 20
	for _, c := range []struct{ inUse, want int64 }{
		{0, floor}, {20 << 20, floor}, {34 << 20, floor}, {35 << 20, 70 << 20}, {82 << 20, 164 << 20},
	} {
		if got := memLimit(floor, c.inUse); got != c.want {
			t.Errorf("memLimit(%d, %d) = %d; want %d", floor, c.inUse, got, c.want)
		}
	}
}

// TestMemInUse: what a collection found live, plus stacks and the
// runtime's own, is counted; garbage is not.
func TestMemInUse(t *testing.T) {
	s := memSamples()
	runtime.GC()
	base := memInUse(s)
	keep := make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	held := memInUse(s)
	runtime.KeepAlive(keep)
	if base <= 0 || held-base < 60<<20 || held-base > 80<<20 {
		t.Errorf("memInUse: %d MiB, then %d MiB with 64 MiB more live; want about 64 MiB more", base>>20, held>>20)
	}
	keep = nil
	for range 200 {
		_ = make([]byte, 1<<20) // garbage
	}
	runtime.GC()
	if after := memInUse(s); after-base > 16<<20 {
		t.Errorf("memInUse after the 64 MiB went and 200 MiB of garbage: %d MiB (was %d); want about as before", after>>20, base>>20)
	}
}
