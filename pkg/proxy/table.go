package proxy

import (
	"context"
	"time"

	"github.com/zdtools/zd/pkg/workertable"
)

// WatchTable follows the worker table at path (workers.msgpack written by
// zd-run) until ctx ends: ready workers become backends, draining ones stay
// known but get no new requests, the rest are dropped once their requests
// finish. Static Config.Backends are kept alongside.
func (p *Proxy) WatchTable(ctx context.Context, path string) error {
	return workertable.Watch(ctx, path, func(t *workertable.Table) {
		p.applyTable(path, t)
	})
}

func (p *Proxy) applyTable(path string, t *workertable.Table) {
	specs := make([]BackendSpec, 0, len(t.Workers)+len(p.cfg.Backends))
	for _, a := range p.cfg.Backends {
		specs = append(specs, BackendSpec{Addr: a})
	}
	for _, w := range t.Workers {
		if w.Backend == "" {
			continue
		}
		var draining bool
		switch w.State {
		case workertable.StateReady:
		case workertable.StateDraining, workertable.StateStopping:
			draining = true
		default:
			continue // starting or exited: no traffic
		}
		specs = append(specs, BackendSpec{Addr: w.Backend, Draining: draining, Slot: w.Slot, Generation: w.Generation, PID: w.PID, Worker: true})
	}
	if err := p.SetBackends(specs); err != nil {
		p.log.Error("worker table names a bad backend; keeping the previous set", "path", path, "err", err)
		return
	}
	p.mu.Lock()
	p.lastTable = tableInfo{Path: path, Generation: t.Generation, Health: t.Health, Loaded: time.Now()}
	p.mu.Unlock()
	p.log.Info("worker table applied", "generation", t.Generation, "health", t.Health, "backends", len(specs))
}
