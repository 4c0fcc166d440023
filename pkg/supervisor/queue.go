package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/statedir"
)

// queueSocket is zd-queue's control socket when zd-queue runs: the
// --queue-socket flag, else queue.sock in the state dir if it exists.
func (s *Supervisor) queueSocket() string {
	if s.cfg.QueueSocket != "" {
		return s.cfg.QueueSocket
	}
	p := filepath.Join(s.cfg.StateDir, statedir.QueueSock)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// drainQueue asks zd-queue to stop routing to w's backend and to wait until
// nothing is in flight there, bounded by --drain-timeout. Without zd-queue,
// or without a backend address, it does nothing; a zd-queue that fails is
// logged and the stop goes on.
func (s *Supervisor) drainQueue(ctx context.Context, w *worker) {
	s.mu.Lock()
	backend := backendAddr(w.backend)
	s.mu.Unlock()
	sock := s.queueSocket()
	if sock == "" || backend == "" {
		return
	}
	s.flushTable() // zd-queue routes by the table: it must know the replacement first
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout+2*time.Second)
	defer cancel()
	args := queueapi.DrainArgs{Backend: backend, TimeoutMS: s.cfg.DrainTimeout.Milliseconds()}
	s.emit("drain", w, "zd-queue: draining backend "+backend)
	err := control.Call(ctx, sock, queueapi.OpDrain, args, nil)
	if control.CodeOf(err) == control.CodeNotFound {
		// zd-queue never routed to it (never ready, or the table not read yet): nothing to drain.
		s.log.Debug("zd-queue does not know the backend; nothing to drain", "backend", backend)
		return
	}
	if err != nil {
		s.log.Warn("zd-queue drain failed; stopping the worker anyway", "backend", backend, "err", err)
	}
}

// queueCall sends op (a queueapi.Op*) to zd-queue if it runs; it reports
// whether zd-queue took it.
func (s *Supervisor) queueCall(ctx context.Context, op string, args any) bool {
	sock := s.queueSocket()
	if sock == "" {
		return false
	}
	s.flushTable()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := control.Call(ctx, sock, op, args, nil)
	if err != nil {
		if !errors.Is(err, control.ErrNotRunning) {
			s.log.Warn("zd-queue "+op+" failed", "err", err)
		}
		return false
	}
	s.emit("queue", nil, "zd-queue: "+op)
	return true
}
