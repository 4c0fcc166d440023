package queue

import (
	"context"
	"fmt"
	"sync"
)

// Buffer is a bounded, prioritised holding area for requests that cannot be
// dispatched yet. All methods are safe for concurrent use.
//
// State is guarded by one mutex rather than owned by a goroutine: every
// operation is a few pointer updates (O(1) push and cancel, release O(1)
// per backend with pinned tickets, 64-bit bitmap scans), so a channel round-trip to an owner goroutine would cost
// more than the work itself and the enqueue target (≥ 1,000,000 Push/s on
// one core) would be out of reach. Nothing slow runs under the mutex:
// compression runs outside it and expiry works in bounded batches.
type Buffer struct {
	limits Limits // normalized
	zstd   *codec // nil unless Overflow is Compress

	mu             sync.Mutex
	closed         bool
	paused         bool
	global         pqueue             // unpinned tickets
	pinned         map[string]*pqueue // tickets pinned to a backend; no empty queues
	pausedBackends map[string]struct{}
	ahead, atail   *Ticket // every held ticket, oldest first
	zcursor        *Ticket // oldest ticket not yet considered for compression
	seq            uint64
	inflight       int // released, not Done
	concurrency    int

	held        int
	bytes       int64 // charged against MaxBytes
	rawBytes    int64 // bodies uncompressed
	storedBytes int64 // bodies as stored
	prioMask    uint64
	prioCount   [numBuckets]int
	prioBytes   [numBuckets]int64
	c           counters

	// testHookCompress, if set, runs while compression has the lock
	// dropped, so tests can change the buffer under it.
	testHookCompress func()

	wake   chan struct{} // kicks the expiry sweeper when the first ticket arrives
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns an empty, unpaused Buffer with limits l (see Limits for zero
// values). If l.MaxAge is set it starts an expiry goroutine, stopped by
// Close. A buffer that Close is never called on leaks only that goroutine.
func New(l Limits) *Buffer {
	l = l.normalize()
	b := &Buffer{
		limits:         l,
		pinned:         make(map[string]*pqueue),
		pausedBackends: make(map[string]struct{}),
		concurrency:    l.ReplayConcurrency,
		wake:           make(chan struct{}, 1),
	}
	if l.Overflow == Compress {
		b.zstd = newCodec()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if l.MaxAge > 0 {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.sweep(ctx)
		}()
	}
	return b
}

// Limits returns the buffer's limits as given to New, with defaults applied
// (Stats has the current replay concurrency, which SetReplayConcurrency
// changes).
func (b *Buffer) Limits() Limits { return b.limits }

// RetryAfter returns the Retry-After header value, in whole seconds, to send
// with a 503 for a rejected ticket (see Limits.RetryAfter).
func (b *Buffer) RetryAfter() int { return b.limits.RetryAfterSeconds() }

// Push hands t to the buffer. It returns nil when t was accepted: held, or
// released at once when nothing holds it back (not paused, a replay slot
// free; the limits do not apply then, as nothing is held); either way the
// caller then blocks in t.Wait. Otherwise t is rejected, t.Wait returns that
// rejection at once, and Push returns:
//
//   - a *LimitError wrapping ErrTooLarge if t would be held but its body
//     plus the per-entry overhead exceeds MaxBytes on its own (answer 413);
//   - a *LimitError wrapping ErrFull naming the limit (bytes or count) if
//     the overflow strategy could not make room (answer 503);
//   - ErrClosed after Close (answer 503);
//   - an error wrapping ErrReused if t was pushed before (a caller bug).
//
// With overflow Oldest, Push may reject held tickets (ReasonEvicted); with
// Compress it may compress held bodies, outside the buffer's lock.
func (b *Buffer) Push(t *Ticket) error {
	b.mu.Lock()
	if t.state != stateNew || t.b != nil {
		b.mu.Unlock()
		return fmt.Errorf("push request: %w", ErrReused)
	}
	t.b = b
	size := int64(len(t.body)) + b.limits.EntryOverhead
	for round := 0; ; round++ {
		if b.closed {
			b.refuseLocked(t, ReasonShutdown)
			b.mu.Unlock()
			return ErrClosed
		}
		if b.releasableLocked(t.backend) && b.inflight < b.concurrency {
			// Pass-through: nothing waits ahead of t, so it never occupies
			// buffer space.
			b.c.pushed++
			b.c.released++
			b.inflight++
			t.state = stateReleased
			t.outcome = Outcome{Released: true}
			close(t.done)
			b.mu.Unlock()
			return nil
		}
		if b.limits.MaxBytes > 0 && size > b.limits.MaxBytes {
			b.refuseLocked(t, ReasonTooLarge)
			b.mu.Unlock()
			return &LimitError{Limit: LimitBytes, Max: b.limits.MaxBytes, Held: b.bytes, Need: size,
				Strategy: b.limits.Overflow, Err: ErrTooLarge}
		}
		limit := b.overLocked(size)
		if limit == "" {
			b.insertLocked(t, size)
			b.mu.Unlock()
			return nil
		}
		switch {
		case b.limits.Overflow == Oldest && b.evictLocked(t.prio, size):
			continue
		case b.limits.Overflow == Compress && limit == LimitBytes && round < maxCompressRounds:
			// Unlocks while compressing; the world may have changed, so
			// go round again.
			if b.compressLocked(t, size) {
				size = int64(len(t.body)) + b.limits.EntryOverhead
				continue
			}
		}
		err := b.fullErrorLocked(limit, size)
		b.refuseLocked(t, ReasonOverflow)
		b.mu.Unlock()
		return err
	}
}

// overLocked names the limit that holding one more ticket of size bytes
// would exceed, or "" if it fits.
func (b *Buffer) overLocked(size int64) Limit {
	if b.limits.MaxCount > 0 && b.held+1 > b.limits.MaxCount {
		return LimitCount
	}
	if b.limits.MaxBytes > 0 && b.bytes+size > b.limits.MaxBytes {
		return LimitBytes
	}
	return ""
}

func (b *Buffer) fullErrorLocked(limit Limit, size int64) error {
	e := &LimitError{Limit: limit, Strategy: b.limits.Overflow, Err: ErrFull}
	if limit == LimitCount {
		e.Max, e.Held, e.Need = int64(b.limits.MaxCount), int64(b.held), 1
	} else {
		e.Max, e.Held, e.Need = b.limits.MaxBytes, b.bytes, size
	}
	return e
}

// refuseLocked rejects a ticket that never entered the buffer.
func (b *Buffer) refuseLocked(t *Ticket, r Reason) {
	b.c.rejected[r]++
	t.state = stateRejected
	t.outcome = Outcome{Reason: r}
	close(t.done)
}

// insertLocked adds t to its dispatch queue and the age list.
func (b *Buffer) insertLocked(t *Ticket, size int64) {
	b.seq++
	t.seq, t.size, t.state = b.seq, size, stateHeld
	if t.backend == "" {
		b.global.push(t)
	} else {
		q := b.pinned[t.backend]
		if q == nil {
			q = new(pqueue)
			b.pinned[t.backend] = q
		}
		q.push(t)
	}
	t.aprev, t.anext = b.atail, nil
	if b.atail != nil {
		b.atail.anext = t
	} else {
		b.ahead = t
		if b.limits.MaxAge > 0 {
			select {
			case b.wake <- struct{}{}:
			default:
			}
		}
	}
	b.atail = t
	if b.zcursor == nil && b.zstd != nil {
		b.zcursor = t
	}
	i := bucketOf(t.prio)
	b.prioCount[i]++
	b.prioBytes[i] += size
	b.prioMask |= 1 << i
	b.held++
	b.bytes += size
	b.rawBytes += int64(t.rawLen)
	b.storedBytes += int64(len(t.body))
	b.c.pushed++
	b.c.peakHeld = max(b.c.peakHeld, b.held)
	b.c.peakBytes = max(b.c.peakBytes, b.bytes)
}

// unlinkLocked removes a held ticket from every structure and its bytes
// from the accounts.
func (b *Buffer) unlinkLocked(t *Ticket) {
	q := t.q
	q.remove(t)
	if q != &b.global && q.n == 0 {
		delete(b.pinned, t.backend)
	}
	if t.aprev != nil {
		t.aprev.anext = t.anext
	} else {
		b.ahead = t.anext
	}
	if t.anext != nil {
		t.anext.aprev = t.aprev
	} else {
		b.atail = t.aprev
	}
	if b.zcursor == t {
		b.zcursor = t.anext
	}
	t.aprev, t.anext = nil, nil
	i := bucketOf(t.prio)
	b.prioCount[i]--
	b.prioBytes[i] -= t.size
	if b.prioCount[i] == 0 {
		b.prioMask &^= 1 << i
	}
	b.held--
	b.bytes -= t.size
	b.rawBytes -= int64(t.rawLen)
	b.storedBytes -= int64(len(t.body))
}

// rejectLocked removes a held ticket and wakes its waiter with reason r.
func (b *Buffer) rejectLocked(t *Ticket, r Reason) {
	b.unlinkLocked(t)
	b.refuseLocked(t, r)
}

// abandon is Wait's exit when the client went away. It returns the outcome
// and true if the ticket had already been rejected.
func (b *Buffer) abandon(t *Ticket) (Outcome, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch t.state {
	case stateRejected:
		return t.outcome, t.outcome.Reason != ReasonCancelled
	case stateHeld:
		b.unlinkLocked(t)
		b.refuseLocked(t, ReasonCancelled)
	case stateReleased:
		// Released in the same instant the client left: the caller will
		// not forward it, so give the slot back now.
		t.state = stateDone
		b.c.abandoned++
		b.inflight--
		b.pumpLocked()
	}
	return Outcome{}, false
}

// Flush rejects every held ticket with ReasonFlushed and returns how many.
// Released tickets are not affected.
func (b *Buffer) Flush() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rejectAllLocked(ReasonFlushed)
}

func (b *Buffer) rejectAllLocked(r Reason) int {
	n := 0
	for b.ahead != nil {
		b.rejectLocked(b.ahead, r)
		n++
	}
	return n
}

// Close rejects every held ticket with ReasonShutdown, makes every later
// Push fail with ErrClosed, stops the expiry goroutine and waits for it.
// Released tickets may still call Done and Body. Close returns the number of
// tickets rejected; calling it again returns 0.
func (b *Buffer) Close() int {
	b.mu.Lock()
	b.closed = true
	n := b.rejectAllLocked(ReasonShutdown)
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return n
}
