package load

import "sync/atomic"

// countdown hands out at most n request slots across goroutines.
type countdown struct{ n atomic.Int64 }

// take reports whether a slot was left, and takes it.
func (c *countdown) take() bool { return c.n.Add(-1) >= 0 }
