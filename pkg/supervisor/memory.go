package supervisor

import (
	"fmt"
	"time"
)

// memoryWatch replaces, one at a time and by the rolling path (start a new
// worker, wait ready, drain the old), every ready worker whose RSS passed
// --max-memory. It never kills a worker for memory: that would fail its
// requests. A reload in progress postpones it.
func (s *Supervisor) memoryWatch() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var over *worker
		var size int64
		for _, w := range s.slots {
			if w == nil || w.state != StateReady {
				continue
			}
			if r := rss(w.pid); r > s.cfg.MaxMemory {
				over, size = w, r
				break
			}
		}
		s.mu.Unlock()
		if over == nil {
			continue
		}
		if _, err := s.lockReload("memory replacement"); err != nil {
			continue
		}
		s.log.Warn("worker past --max-memory; replacing it", "slot", over.slot, "pid", over.pid,
			"rss_mb", size>>20, "max_mb", s.cfg.MaxMemory>>20)
		s.emit("memory", over, fmt.Sprintf("worker %d (pid %d) uses %d MB, past --max-memory %d MB: replacing it",
			over.slot, over.pid, size>>20, s.cfg.MaxMemory>>20))
		if err := s.replaceSlot(s.ctx, over.slot, over.gen, over.release, over.restarts+1); err != nil {
			s.log.Error("memory replacement failed; the worker keeps running", "slot", over.slot, "err", err)
		}
		s.unlockReload()
		s.publish()
	}
}
