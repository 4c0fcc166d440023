package supervisor

import (
	"fmt"
	"time"
)

// memoryWatch replaces, one at a time and by the rolling path (start a new
// worker, wait ready, drain the old), every ready worker whose RSS passed
// --max-memory, or that missed its --watchdog pings (or sent
// WATCHDOG=trigger). It never kills a worker for memory: that would fail its
// requests. A reload in progress postpones it.
func (s *Supervisor) memoryWatch() {
	defer s.wg.Done()
	every := time.Second
	if s.cfg.Watchdog > 0 {
		every = min(every, max(s.cfg.Watchdog/4, 10*time.Millisecond))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var over *worker
		var why string
		now := time.Now()
		for _, w := range s.slots {
			if w == nil || w.state != StateReady {
				continue
			}
			if s.cfg.Watchdog > 0 && w.hung == "" && now.Sub(w.pinged) > s.cfg.Watchdog {
				w.hung = fmt.Sprintf("no WATCHDOG=1 for %v (--watchdog %v)", now.Sub(w.pinged).Round(time.Millisecond), s.cfg.Watchdog)
			}
			if w.hung != "" {
				over, why = w, w.hung
				break
			}
			if s.cfg.MaxMemory > 0 {
				if r := rss(w.pid); r > s.cfg.MaxMemory {
					over = w
					why = fmt.Sprintf("uses %d MB, past --max-memory %d MB", r>>20, s.cfg.MaxMemory>>20)
					break
				}
			}
		}
		s.mu.Unlock()
		if over == nil {
			continue
		}
		gen, err := s.lockReload("replacement")
		if err != nil {
			continue
		}
		s.log.Warn("replacing a worker", "slot", over.slot, "pid", over.pid, "why", why)
		kind := "memory"
		if over.hung != "" {
			kind = "watchdog"
		}
		s.emit(kind, over, fmt.Sprintf("worker %d (pid %d) %s: replacing it", over.slot, over.pid, why))
		// The replacement gets a generation number of its own, so that its
		// --worker-listen address ({gen}) differs from the live worker's.
		if err := s.replaceSlot(s.ctx, over.slot, gen, over.release, over.restarts+1); err != nil {
			s.log.Error("replacement failed; the worker keeps running", "slot", over.slot, "err", err)
		}
		s.unlockReload()
		s.publish()
	}
}
