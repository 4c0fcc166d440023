package queue

// Pause stops releasing tickets: every ticket pushed from now on is held
// until Resume (buffering while backends change).
func (b *Buffer) Pause() {
	b.mu.Lock()
	b.paused = true
	b.mu.Unlock()
}

// Resume ends Pause and starts the paced replay of the held tickets that no
// backend pause holds back.
func (b *Buffer) Resume() {
	b.mu.Lock()
	b.paused = false
	b.pumpLocked()
	b.mu.Unlock()
}

// Paused reports whether the buffer is globally paused.
func (b *Buffer) Paused() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paused
}

// PauseBackend holds every ticket pinned to backend id until
// ResumeBackend(id) or DropBackend(id). Unpinned tickets are not affected.
func (b *Buffer) PauseBackend(id string) {
	b.mu.Lock()
	b.pausedBackends[id] = struct{}{}
	b.mu.Unlock()
}

// ResumeBackend ends PauseBackend(id) and starts the replay of the tickets
// pinned to id (unless the whole buffer is paused).
func (b *Buffer) ResumeBackend(id string) {
	b.mu.Lock()
	delete(b.pausedBackends, id)
	b.pumpLocked()
	b.mu.Unlock()
}

// BackendPaused reports whether PauseBackend(id) is in effect.
func (b *Buffer) BackendPaused(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.pausedBackends[id]
	return ok
}

// DropBackend forgets backend id (it is gone for good): its pause ends and
// the tickets pinned to it become unpinned (Ticket.Backend returns ""),
// keeping their priority and place in line, and are released like any
// unpinned ticket. They are not rejected: they were never sent anywhere, so
// any backend can serve them and no request has to fail. It returns the
// number of tickets unpinned.
func (b *Buffer) DropBackend(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pausedBackends, id)
	q := b.pinned[id]
	if q == nil {
		return 0
	}
	n := q.n
	for m := q.nonEmpty; m != 0; m &= m - 1 {
		for t := q.buckets[bitIndex(m)].head; t != nil; t = t.qnext {
			t.backend = ""
		}
	}
	b.global.mergeFrom(q)
	delete(b.pinned, id)
	b.pumpLocked()
	return n
}

// SetReplayConcurrency sets how many released tickets may be not yet Done
// at once (n ≤ 0: DefaultReplayConcurrency), and releases more if that
// opened slots.
func (b *Buffer) SetReplayConcurrency(n int) {
	if n <= 0 {
		n = DefaultReplayConcurrency
	}
	b.mu.Lock()
	b.concurrency = n
	b.pumpLocked()
	b.mu.Unlock()
}

// releasableLocked reports whether a ticket pinned to backend ("" for none)
// may be released now, pacing aside.
func (b *Buffer) releasableLocked(backend string) bool {
	if b.paused {
		return false
	}
	if backend == "" || len(b.pausedBackends) == 0 {
		return true
	}
	_, p := b.pausedBackends[backend]
	return !p
}

// nextLocked returns the held ticket to release next: highest priority
// first, oldest first within a priority, among the queues not paused.
func (b *Buffer) nextLocked() *Ticket {
	if b.paused {
		return nil
	}
	best := b.global.top()
	for id, q := range b.pinned {
		if _, p := b.pausedBackends[id]; p {
			continue
		}
		if t := q.top(); t != nil && before(t, best) {
			best = t
		}
	}
	return best
}

// pumpLocked releases tickets while replay slots are free.
func (b *Buffer) pumpLocked() {
	for b.inflight < b.concurrency {
		t := b.nextLocked()
		if t == nil {
			return
		}
		b.unlinkLocked(t)
		b.inflight++
		b.c.released++
		b.c.replayed++
		t.state = stateReleased
		t.outcome = Outcome{Released: true}
		close(t.done)
	}
}

// done is Ticket.Done.
func (b *Buffer) done(t *Ticket) {
	b.mu.Lock()
	if t.state == stateReleased {
		t.state = stateDone
		b.inflight--
		b.pumpLocked()
	}
	b.mu.Unlock()
}
