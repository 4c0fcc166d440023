package wsrelay

import (
	"sync/atomic"
	"time"
)

// Moves run on goroutines that are kept for the next move a while: a
// move's dial goes deep into package net, and a new goroutine's stack grew
// (was copied) on every one of them, 6.5% of the relay's CPU time in a
// drain of 9,980 sessions. A mover that is done waits moverIdle for
// another move, then ends; at most maxIdle wait at once (Config.MaxDials),
// so a burst of moves (a backend that dropped thousands of sessions) does
// not leave thousands of stacks behind.

const moverIdle = 5 * time.Second

// movers is the relay's set of waiting movers.
type movers struct {
	idle atomic.Int32 // waiting movers not yet claimed by goMove
	q    chan func()  // a claimed mover receives its move here
}

// goMove runs f on a waiting mover, or on a new one.
func (r *Relay) goMove(f func()) {
	if r.mv.claim() {
		r.mv.q <- f
		return
	}
	// Run holds r.wg while its session can move: this Add does not race
	// Close's Wait at zero.
	r.wg.Add(1)
	go r.mover(f)
}

// claim takes one waiting mover off the count; the caller then owes it a
// move on q.
func (m *movers) claim() bool {
	for {
		n := m.idle.Load()
		if n <= 0 {
			return false
		}
		if m.idle.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// mover runs f and the moves it is handed after it, until none comes for
// moverIdle or the relay closes.
func (r *Relay) mover(f func()) {
	defer r.wg.Done()
	var t *time.Timer
	for {
		f()
		if r.mv.idle.Add(1) > int32(r.cfg.MaxDials) && r.mv.claim() {
			return // enough wait already
		}
		if t == nil {
			t = time.NewTimer(moverIdle)
		} else {
			t.Reset(moverIdle)
		}
		select {
		case f = <-r.mv.q:
			t.Stop()
			continue
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
		}
		if r.mv.claim() {
			return
		}
		// A goMove claimed this mover meanwhile: its move is on the way.
		f = <-r.mv.q
	}
}
