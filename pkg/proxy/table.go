package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/zdtools/zd/pkg/workertable"
)

// WatchTable follows the worker table at path (workers.msgpack written by
// zd-run) until ctx ends: ready workers become backends, draining ones stay
// known but get no new requests, the rest are dropped once their requests
// finish. Static Config.Backends are kept alongside.
//
// A table that is not there yet is waited for; the start is logged at warn
// level with the reason (no such folder, or no such file yet), and Status
// reports it as the health reason until the table is read.
func (p *Proxy) WatchTable(ctx context.Context, path string) error {
	p.ExpectTable(path)
	return workertable.Watch(ctx, path, func(t *workertable.Table) {
		p.applyTable(path, t)
	})
}

// ExpectTable records that backends come from the worker table at path, so
// that Status explains their absence from now on, and warns once if the
// table is missing. WatchTable calls it; call it first to have status right
// before the watch has started.
func (p *Proxy) ExpectTable(path string) {
	p.mu.Lock()
	known := p.tablePath == path
	p.tablePath = path
	p.mu.Unlock()
	if known {
		return
	}
	if why := tableMissing(path); why != "" {
		p.log.Warn("no backends from the worker table yet: "+why, "path", path)
	}
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

// tableMissing says why the worker table at path cannot be read now, or ""
// when the file is there.
func tableMissing(path string) string {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Sprintf("%s is a file, not a folder: point --backends-from at zd-run's state dir, not a file in it", dir)
	} else if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("its folder %s does not exist: start zd-run with the same --name or --state-dir, or point --backends-from at zd-run's state dir", dir)
		}
		return fmt.Sprintf("its folder %s cannot be read: %v", dir, errors.Unwrap(err))
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("%s does not exist yet: zd-run writes it once it starts workers with --worker-listen", path)
		}
		return fmt.Sprintf("%s cannot be read: %v", path, errors.Unwrap(err))
	}
	return ""
}
