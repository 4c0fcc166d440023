package supervisor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/runapi"
)

// Handler answers run.sock requests (see package runapi for the ops).
// carry returns the fds an in-place upgrade must keep besides the listeners
// and the notify socket (the control socket itself); it may be nil.
func (s *Supervisor) Handler(carry func() (map[string]*os.File, error)) control.Handler {
	return func(ctx context.Context, req *control.Request, st control.Stream) (any, error) {
		switch req.Op {
		case runapi.OpStatus:
			return s.Status(), nil
		case runapi.OpReload, runapi.OpRollback:
			var args runapi.ReloadArgs
			if err := req.Decode(&args); err != nil {
				return nil, err
			}
			s.log.Info(req.Op+" requested", "by", peerName(req.Peer), "strategy", args.Strategy, "target", args.Target,
				"exclusive", args.Exclusive, "force", args.Force)
			return s.streamReload(ctx, st, req.Op, args, carry)
		case runapi.OpStop:
			var args runapi.StopArgs
			if err := req.Decode(&args); err != nil {
				return nil, err
			}
			s.StopBy(args.Now, peerName(req.Peer))
			return runapi.StopResult{Stopping: true}, nil
		case runapi.OpWatch:
			return nil, s.watchEvents(ctx, st)
		}
		return nil, control.UnknownOp(req.Op)
	}
}

// streamReload runs a reload (or rollback, or upgrade) and streams its
// events to the client while it runs.
func (s *Supervisor) streamReload(ctx context.Context, st control.Stream, op string, args runapi.ReloadArgs,
	carry func() (map[string]*os.File, error)) (any, error) {
	events, unsub := s.Subscribe()
	var wg sync.WaitGroup
	done := make(chan struct{})
	var mu sync.Mutex // Send from the forwarder and from beforeExec
	var finishOnce func()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case e := <-events:
				mu.Lock()
				_ = st.Send(e)
				mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	finish := func() { once.Do(finishOnce) }
	finishOnce = func() {
		close(done)
		wg.Wait()
		unsub()
		for {
			select {
			case e := <-events:
				_ = st.Send(e)
			default:
				return
			}
		}
	}
	var res runapi.ReloadResult
	var err error
	switch {
	case op == runapi.OpRollback:
		res, err = s.Rollback(ctx, args)
	case s.effectiveStrategy(args.Strategy) == runapi.StrategyHandoff && args.Exclusive:
		err = errExclusiveHandoff
	case s.effectiveStrategy(args.Strategy) == runapi.StrategyHandoff:
		var extra map[string]*os.File
		if carry != nil {
			if extra, err = carry(); err != nil {
				finish()
				return nil, control.Errorf(control.CodeInternal, "", "upgrade: %v", err)
			}
		}
		res, err = s.UpgradeWith(ctx, extra, func(r runapi.ReloadResult) {
			finish()
			_ = st.Send(runapi.Event{TimeUnixMS: time.Now().UnixMilli(), Kind: "exec", Slot: -1, PID: os.Getpid(),
				Message: "new zd-run image passed --check; re-executing in place"})
		})
		finish()
		for _, f := range extra {
			f.Close()
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	default:
		res, err = s.Reload(ctx, args)
	}
	finish()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// peerName names a run.sock client for the log: its command name (from
// /proc, usually "zdctl"), pid and uid.
func peerName(p control.Cred) string {
	name := "run.sock client"
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/comm"); err == nil && len(b) > 1 {
		name = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s (pid %d, uid %d)", name, p.PID, p.UID)
}

// watchEvents streams every event until the client goes away.
func (s *Supervisor) watchEvents(ctx context.Context, st control.Stream) error {
	events, unsub := s.Subscribe()
	defer unsub()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-events:
			if err := st.Send(e); err != nil {
				return nil
			}
		}
	}
}

// effectiveStrategy is the strategy a reload with strategy s uses.
func (s *Supervisor) effectiveStrategy(strategy string) string {
	if strategy = NormalizeStrategy(strategy); strategy == "" {
		return s.cfg.Strategy
	}
	return strategy
}

// DefaultStrategy is --strategy: what HUP and a reload without one use.
func (s *Supervisor) DefaultStrategy() string { return s.cfg.Strategy }
