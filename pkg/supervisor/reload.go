package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
)

// Reload replaces every worker with a new generation of the command as it
// resolves now, with args.Strategy (default --strategy). It returns when the
// old generation is gone, or with a *control.Error: CodeBusy when another
// reload runs ("reload already in progress"), CodeUnavailable during a stop
// or when the command resolves to the release the last rollback rolled back
// from (unless args.Force), CodeBadRequest for --exclusive with handoff,
// CodeTimeout when args.TimeoutMS ran out, CodeAborted when the new
// generation failed (its workers are stopped; the old generation keeps
// serving; the error says which worker and why).
func (s *Supervisor) Reload(ctx context.Context, args runapi.ReloadArgs) (runapi.ReloadResult, error) {
	strategy := NormalizeStrategy(args.Strategy)
	if strategy == "" {
		strategy = s.cfg.Strategy
	}
	if err := CheckStrategy(strategy); err != nil {
		return runapi.ReloadResult{}, control.Errorf(control.CodeBadRequest, "use rolling, blue-green or handoff", "%v", err)
	}
	if strategy == runapi.StrategyHandoff {
		if args.Exclusive {
			return runapi.ReloadResult{Strategy: strategy}, errExclusiveHandoff
		}
		return s.Upgrade(ctx)
	}
	release, err := s.resolveRelease()
	if err != nil {
		return runapi.ReloadResult{Strategy: strategy}, control.Errorf(control.CodeAborted,
			"check the command path (a dangling 'current' symlink?); the old generation keeps serving", "%v", err)
	}
	s.mu.Lock()
	from, fromGen := s.rolledBackFrom, s.gen
	s.mu.Unlock()
	if from != "" && release == from && !args.Force {
		return runapi.ReloadResult{Strategy: strategy, Release: runapi.Text(release)}, control.Errorf(control.CodeUnavailable,
			"point the command's link at another release, or deploy this one again on purpose: zdctl reload --force",
			"reload refused: the command resolves to %s, the release rolled back from (generation %d serves the one before)", release, fromGen)
	}
	return s.reloadTo(ctx, strategy, release, args, "")
}

// errExclusiveHandoff refuses the one combination of reload flags that
// makes no sense.
var errExclusiveHandoff = control.Errorf(control.CodeBadRequest,
	"--exclusive replaces the workers, a handoff replaces zd-run and keeps them: drop one of the two",
	"reload refused: --exclusive cannot be combined with the handoff strategy")

// Rollback reloads to an earlier release with the given strategy (rolling
// or blue-green; default --strategy, rolling when that is handoff):
// args.Target "" is the release before the current one, a number that
// generation's release, an absolute path a release directory or
// executable. On success the release rolled back from is remembered (a
// plain Reload refuses it) and the symlink the command resolves through is
// re-pointed to the release rolled back to while it still leads to the
// release rolled back from; the result's Link says what happened to it.
func (s *Supervisor) Rollback(ctx context.Context, args runapi.ReloadArgs) (runapi.ReloadResult, error) {
	if NormalizeStrategy(args.Strategy) == runapi.StrategyHandoff {
		return runapi.ReloadResult{Strategy: runapi.StrategyHandoff}, control.Errorf(control.CodeBadRequest,
			"a rollback replaces the workers; use --strategy rolling or blue-green",
			"rollback refused: the handoff strategy replaces zd-run only and keeps the workers on their release")
	}
	strategy := s.effectiveStrategy(args.Strategy)
	if strategy == runapi.StrategyHandoff {
		strategy = runapi.StrategyRolling // a rollback replaces workers, never zd-run itself
	}
	s.mu.Lock()
	cur := s.releaseOf(s.gen)
	gen := s.gen
	prev, err := s.rollbackTarget(args.Target, cur)
	s.mu.Unlock()
	switch {
	case err != nil && args.Target == "":
		return runapi.ReloadResult{Strategy: strategy}, control.Errorf(control.CodeNotFound,
			"rollback needs an earlier generation with another release (deploy with 'ln -sfn releases/N current && zdctl reload')",
			"no previous release: every generation so far ran %s", cur)
	case err != nil:
		return runapi.ReloadResult{Strategy: strategy}, control.Errorf(control.CodeBadRequest,
			"give a generation that served (zdctl status shows the current one), or the absolute path of a release directory or executable",
			"rollback to %s: %v", args.Target, err)
	case prev == cur:
		return runapi.ReloadResult{Strategy: strategy}, control.Errorf(control.CodeBadRequest,
			"name another release; zdctl status shows the one serving",
			"rollback to %s: generation %d serves %s already", args.Target, gen, cur)
	}
	return s.reloadTo(ctx, strategy, prev, args, cur)
}

func (s *Supervisor) releaseOf(gen int) string {
	for i := len(s.gens) - 1; i >= 0; i-- {
		if s.gens[i].Gen <= gen {
			return s.gens[i].Release
		}
	}
	return ""
}

// lockReload takes the reload lock for gen, or says why not.
func (s *Supervisor) lockReload(what string) (gen int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return 0, control.Errorf(control.CodeUnavailable, "the service is stopping; start it again first", "%s refused: the service is stopping", what)
	}
	if s.reloading {
		return 0, control.Errorf(control.CodeBusy, "wait for it to finish (zdctl status shows reload_in_progress), then try again",
			"%s refused: reload already in progress (%s)", what, s.reloadWhat)
	}
	s.reloading = true
	s.reloadFail = make(chan struct{})
	s.reloadErr = nil
	if what == "upgrade" {
		// zd-run replaces itself and keeps the workers: no generation.
		s.reloadGen, s.reloadWhat = -1, "upgrading zd-run in place"
		return s.gen, nil
	}
	s.reloadGen = s.nextGen()
	s.lastGen = s.reloadGen // never reused, even when this reload aborts
	verb := map[string]string{"reload": "reloading", "rollback": "rolling back", "replacement": "replacing a worker"}[what]
	s.reloadWhat = fmt.Sprintf("%s to generation %d", verb, s.reloadGen)
	return s.reloadGen, nil
}

func (s *Supervisor) nextGen() int {
	g := max(s.gen, s.lastGen)
	for _, r := range s.gens {
		g = max(g, r.Gen)
	}
	for _, w := range s.workers {
		g = max(g, w.gen)
	}
	return g + 1
}

func (s *Supervisor) unlockReload() {
	s.mu.Lock()
	s.reloading = false
	s.reloadCancel = nil
	s.mu.Unlock()
}

// reloadTo reloads to release; from is the release a rollback rolls back
// from ("" for a reload).
func (s *Supervisor) reloadTo(ctx context.Context, strategy, release string, args runapi.ReloadArgs, from string) (runapi.ReloadResult, error) {
	what := "reload"
	if from != "" {
		what = "rollback"
	}
	gen, err := s.lockReload(what)
	if err != nil {
		return runapi.ReloadResult{Strategy: strategy}, err
	}
	defer s.unlockReload()
	start := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	if args.TimeoutMS > 0 {
		rctx, cancel = context.WithTimeout(ctx, time.Duration(args.TimeoutMS)*time.Millisecond)
	}
	defer cancel()
	s.mu.Lock()
	s.reloadCancel = cancel
	oldGen := s.gen
	oldRelease := s.releaseOf(oldGen)
	s.mu.Unlock()
	s.cfg.Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(sdnotify.MonotonicUsec(), 10) +
		"\nSTATUS=reloading to generation " + strconv.Itoa(gen))
	s.emit("reload", nil, fmt.Sprintf("%s %s to generation %d (%s)", strategy, what, gen, release))
	logArgs := []any{"strategy", strategy, "generation", gen, "release", release, "serving_generation", oldGen, "serving_release", oldRelease}
	s.log.Info(what+" started", logArgs...)
	s.publish()

	switch {
	case args.Exclusive:
		err = s.exclusive(rctx, gen, release, oldGen, oldRelease)
	case strategy == runapi.StrategyBlueGreen:
		err = s.blueGreen(rctx, gen, release)
	default:
		err = s.rolling(rctx, gen, release, oldGen, oldRelease)
	}
	res := runapi.ReloadResult{Strategy: strategy, Generation: gen, Release: runapi.Text(release),
		DurationMS: float64(time.Since(start).Microseconds()) / 1000}
	if args.Exclusive {
		res.Strategy = strategy + "+exclusive"
	}
	s.mu.Lock()
	if err == nil {
		res.ReloadSuccessful = true
		s.gen = gen
		s.gens = append(s.gens, genRecord{Gen: gen, Release: release})
		s.degraded = ""
		clear(s.slotCrashes)
		switch {
		case from != "":
			s.rolledBackFrom = from
		case release != oldRelease:
			s.rolledBackFrom = "" // another release deployed: the guard has done its job
		}
	}
	s.mu.Unlock()
	if err == nil && from != "" {
		res.RolledBackFrom = runapi.Text(from)
		if l, ok, lerr := s.commandLink(); ok {
			res.Link = l.repoint(release, from)
			if res.Link.Error == "" {
				s.log.Info("rollback: link re-pointed", "link", l.Path, "was", res.Link.Was, "now", res.Link.Now)
			} else {
				s.log.Warn("rollback: link not re-pointed", "link", l.Path, "target", res.Link.Was, "why", string(res.Link.Error))
			}
		} else if lerr != nil {
			s.log.Warn("rollback: cannot find the command's link", "err", lerr)
		}
	}
	if err != nil {
		cerr := abortError(err, gen, time.Duration(args.TimeoutMS)*time.Millisecond)
		res.Error, res.Hint = runapi.Text(cerr.Message), runapi.Text(cerr.Hint)
		err = cerr
		s.log.Warn(what+" aborted", append(logArgs, "duration", time.Since(start).Round(time.Millisecond), "err", cerr.Message)...)
		s.emit("abort", nil, what+" aborted: "+cerr.Message)
	} else {
		s.log.Info(what+" done", append(logArgs[:6], "duration", time.Since(start).Round(time.Millisecond))...)
		s.emit("done", nil, fmt.Sprintf("generation %d serving; %s took %v", gen, what, time.Since(start).Round(time.Millisecond)))
	}
	s.mu.Lock()
	r := res
	s.lastReload = &r
	s.mu.Unlock()
	s.publish()
	s.cfg.Notify("READY=1\nSTATUS=" + s.statusLine())
	return res, err
}

// abortError is the error of a failed reload to gen; timeout is the
// reload's own bound (0 none), which running out is CodeTimeout.
func abortError(err error, gen int, timeout time.Duration) *control.Error {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce
	}
	if timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
		return control.Errorf(control.CodeTimeout, "the old generation keeps serving; raise --timeout, or check why the new workers are slow (zd-run's log)",
			"reload to generation %d aborted: not done within --timeout %v", gen, timeout)
	}
	hint := "the old generation keeps serving; fix the release and reload again, or run zdctl rollback"
	var we *WorkerError
	if errors.As(err, &we) && we.Hint != "" {
		hint = we.Hint
	}
	if errors.Is(err, context.DeadlineExceeded) {
		hint = "the reload ran past --timeout; the old generation keeps serving"
	}
	if errors.Is(err, context.Canceled) {
		hint = "the reload was cancelled (stop, or the client went away); the old generation keeps serving"
	}
	return control.Errorf(control.CodeAborted, hint, "reload to generation %d aborted: %v", gen, err)
}

// waitNew waits until a new worker is ready; it fails when the worker
// exits, is not ready in time, another new worker died, or ctx ends.
func (s *Supervisor) waitNew(ctx context.Context, w *worker) error {
	s.mu.Lock()
	fail := s.reloadFail
	s.mu.Unlock()
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-fail:
			s.mu.Lock()
			err := s.reloadErr
			s.mu.Unlock()
			cancel(err)
		case <-wctx.Done():
		}
	}()
	err := s.waitReady(wctx, w)
	if err != nil && context.Cause(wctx) != nil && ctx.Err() == nil {
		if cause := context.Cause(wctx); cause != context.Canceled {
			return cause
		}
	}
	return err
}

// settle keeps watching a ready new worker for --settle before it takes
// over: a release that crashes right after READY=1 then aborts the reload
// instead of replacing the old generation. Settle periods of a blue-green
// generation overlap, as its workers became ready together.
func (s *Supervisor) settle(ctx context.Context, w *worker) error {
	d := s.cfg.Settle - time.Since(w.readyAtSafe(s))
	if d <= 0 {
		return nil
	}
	s.mu.Lock()
	fail := s.reloadFail
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-fail:
		return s.failed()
	case <-w.exited:
		if err := s.failed(); err != nil {
			return err
		}
		return &WorkerError{Slot: w.slot, PID: w.pid, Gen: w.gen, Reason: "exited within --settle " + s.cfg.Settle.String() + " of being ready",
			Hint: "the new release crashes after start; the old generation keeps serving, fix the release or run zdctl rollback"}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failed returns the error of a new-generation worker that died during the
// reload, if any.
func (s *Supervisor) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadErr
}

// replaceSlot starts a worker of gen in slot, waits until it is ready, makes
// it the slot's worker and drains and stops the one it replaces. On failure
// the new worker is stopped and the old one stays.
func (s *Supervisor) replaceSlot(ctx context.Context, slot, gen int, release string, restarts int) error {
	nw, err := s.spawn(ctx, slot, gen, release, restarts)
	if err != nil {
		return err
	}
	err = s.waitNew(ctx, nw)
	if err == nil {
		err = s.settle(ctx, nw)
	}
	if err == nil {
		err = s.failed()
	}
	if err != nil {
		s.stopWorker(s.ctx, nw, false)
		return err
	}
	s.mu.Lock()
	old := s.slots[slot]
	s.slots[slot] = nw
	s.mu.Unlock()
	s.publish()
	if old != nil {
		s.stopWorker(s.ctx, old, false)
	}
	return nil
}

// rolling replaces the slots --max-surge at a time. On failure it stops the
// new generation's workers and puts the old release back in the slots that
// had already switched, so the old generation serves again everywhere.
func (s *Supervisor) rolling(ctx context.Context, gen int, release string, oldGen int, oldRelease string) error {
	n := s.cfg.Workers
	var firstErr error
	for lo := 0; lo < n && firstErr == nil; lo += s.cfg.MaxSurge {
		hi := min(lo+s.cfg.MaxSurge, n)
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		for slot := lo; slot < hi; slot++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[slot-lo] = s.replaceSlot(ctx, slot, gen, release, 0)
			}()
		}
		wg.Wait()
		firstErr = firstOf(errs)
		if firstErr == nil {
			firstErr = s.failed()
		}
	}
	if firstErr == nil {
		firstErr = s.failed()
	}
	if firstErr == nil {
		return nil
	}
	s.restoreOld(gen, oldGen, oldRelease)
	return firstErr
}

// restoreOld brings the old release back into every slot that runs gen or
// is empty, one slot at a time, then stops any leftover worker of gen.
func (s *Supervisor) restoreOld(gen, oldGen int, oldRelease string) {
	if oldRelease == "" {
		return
	}
	for slot := range s.cfg.Workers {
		s.mu.Lock()
		w := s.slots[slot]
		need := !s.stopping && (w == nil || w.gen == gen)
		s.mu.Unlock()
		if !need {
			continue
		}
		s.emit("restore", w, fmt.Sprintf("slot %d: back to generation %d", slot, oldGen))
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadyTimeout+s.cfg.Grace)
		s.mu.Lock()
		s.reloadGen = -1 // the restore's own workers are not the failed generation
		s.reloadFail = make(chan struct{})
		s.reloadErr = nil
		s.mu.Unlock()
		if err := s.replaceSlot(ctx, slot, oldGen, oldRelease, 0); err != nil {
			s.log.Error("could not restore the old release", "slot", slot, "err", err)
		}
		cancel()
	}
	s.stopGen(gen)
}

// stopGen stops every live worker of gen that is not a slot's worker.
func (s *Supervisor) stopGen(gen int) {
	s.mu.Lock()
	var left []*worker
	for _, w := range s.workers {
		if w.gen == gen && s.slots[w.slot] != w {
			left = append(left, w)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range left {
		wg.Add(1)
		go func() { defer wg.Done(); s.stopWorker(s.ctx, w, false) }()
	}
	wg.Wait()
}

// blueGreen starts a whole new generation; when every new worker is ready it
// switches (publishes the new generation, zd-queue flips its backend set),
// then drains and stops the old generation. Before the switch, any failure
// stops the new generation only.
func (s *Supervisor) blueGreen(ctx context.Context, gen int, release string) error {
	n := s.cfg.Workers
	news := make([]*worker, 0, n)
	var err error
	for slot := range n {
		var w *worker
		if w, err = s.spawn(ctx, slot, gen, release, 0); err != nil {
			break
		}
		news = append(news, w)
	}
	if err == nil {
		errs := make([]error, len(news))
		var wg sync.WaitGroup
		for i, w := range news {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = s.waitNew(ctx, w) }()
		}
		wg.Wait()
		if err = s.failed(); err == nil {
			err = firstOf(errs)
		}
	}
	if err == nil {
		for _, w := range news {
			if err = s.settle(ctx, w); err != nil {
				break
			}
		}
		if ferr := s.failed(); ferr != nil {
			err = ferr
		}
	}
	if err != nil {
		s.stopGen(gen)
		return err
	}
	s.mu.Lock()
	olds := append([]*worker(nil), s.slots...)
	copy(s.slots, news)
	s.reloadGen = -1 // switched: a crash now is an ordinary crash, respawned
	s.mu.Unlock()
	s.publish()
	var wg sync.WaitGroup
	for _, w := range olds {
		if w != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.stopWorker(s.ctx, w, false) }()
		}
	}
	wg.Wait()
	return nil
}

// exclusive reloads an app that cannot run two generations at once: pause
// zd-queue (requests wait there, or in the kernel's accept queue on a shared
// socket), stop the old generation, start the new, wait until it is ready,
// resume. If the new generation fails, the old release is started again.
func (s *Supervisor) exclusive(ctx context.Context, gen int, release string, oldGen int, oldRelease string) error {
	paused := s.queueCall(ctx, queueapi.OpPause, nil)
	defer func() {
		if paused {
			s.queueCall(s.ctx, queueapi.OpResume, nil)
		}
	}()
	s.mu.Lock()
	olds := append([]*worker(nil), s.slots...)
	clear(s.slots)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range olds {
		if w != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.stopWorker(s.ctx, w, false) }()
		}
	}
	wg.Wait()
	err := s.blueGreen(ctx, gen, release)
	if err != nil {
		s.mu.Lock()
		s.reloadGen = -1
		s.mu.Unlock()
		for slot := range s.cfg.Workers {
			w, serr := s.spawn(s.ctx, slot, oldGen, oldRelease, 0)
			if serr != nil {
				s.log.Error("could not restart the old release", "slot", slot, "err", serr)
				continue
			}
			s.mu.Lock()
			s.slots[slot] = w
			s.mu.Unlock()
		}
	}
	return err
}

// firstOf returns the first non-nil error (the slot that failed first in
// slot order; the others usually failed the same way).
func firstOf(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
