package queue

import (
	"context"
	"time"
)

// expireBatch bounds the tickets expired under one hold of the lock, so a
// mass expiry never stalls Push for long.
const expireBatch = 1024

// sweepGranularity is the shortest sleep of the sweeper: under a steady
// flood every ticket has its own deadline, and waking for each would cost
// more than letting a ticket outlive MaxAge by a millisecond.
const sweepGranularity = time.Millisecond

// sweep rejects tickets older than MaxAge with ReasonExpired until ctx ends.
// It sleeps until the oldest held ticket's deadline, or until the first
// ticket arrives in an empty buffer.
func (b *Buffer) sweep(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		b.mu.Lock()
		wait, more := b.expireLocked(time.Now())
		b.mu.Unlock()
		switch {
		case more:
			if ctx.Err() != nil {
				return
			}
			continue
		case wait > 0:
			timer.Reset(max(wait, sweepGranularity))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		default:
			select {
			case <-ctx.Done():
				return
			case <-b.wake:
			}
		}
	}
}

// expireLocked rejects up to expireBatch expired tickets. It returns how
// long until the oldest remaining one expires (0 if none is held), and more
// if the batch ran out before the expired ones did.
func (b *Buffer) expireLocked(now time.Time) (wait time.Duration, more bool) {
	for range expireBatch {
		t := b.ahead
		if t == nil {
			return 0, false
		}
		age := now.Sub(t.created)
		if age < b.limits.MaxAge {
			return b.limits.MaxAge - age, false
		}
		b.rejectLocked(t, ReasonExpired)
	}
	return 0, true
}
