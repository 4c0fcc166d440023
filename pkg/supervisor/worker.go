package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// Worker states, as in the worker table.
const (
	StateStarting = "starting"
	StateReady    = "ready"
	StateDraining = "draining"
	StateStopping = "stopping"
	StateExited   = "exited"
)

var errExited = errors.New("worker exited")

// worker is one app process. Fields other than the channels are guarded by
// Supervisor.mu.
type worker struct {
	slot, gen  int
	pid        int
	release    string
	backend    string // --worker-listen address, "" without
	backendFS  string // unix socket file to remove after exit
	backendIno uint64 // its inode: remove it only if it is still ours
	state      string
	startedAt  time.Time
	readyAt    time.Time
	restarts   int
	status     string    // last STATUS= from the app
	pinged     time.Time // last WATCHDOG=1 (or ready)
	hung       string    // why the watchdog gave up on it
	stopping   bool      // we asked it to stop: its exit is not a crash
	exitDesc   string

	ready     chan struct{}      // closed when ready
	exited    chan struct{}      // closed when reaped
	extend    chan time.Duration // EXTEND_TIMEOUT_USEC from the app while starting
	readyOnce bool
}

// resolveRelease finds the app binary as it is right now: PATH lookup,
// symlinks followed. `ln -sfn releases/43 current` changes the answer.
func (s *Supervisor) resolveRelease() (string, error) {
	name := s.cfg.Command[0]
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	p, err = filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", name, err)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return real, nil
}

// spawn starts one worker of generation gen in slot, running release (the
// resolved app path). It does not wait for readiness.
func (s *Supervisor) spawn(ctx context.Context, slot, gen int, release string, restarts int) (*worker, error) {
	null, err := rawFD(s.devNull)
	if err != nil {
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	files := []uintptr{null, 1, 2}
	names := make([]string, 0, len(s.cfg.Listeners)+1)
	for _, l := range s.cfg.Listeners {
		fd, err := rawFD(l.File)
		if err != nil {
			return nil, fmt.Errorf("start worker %d: listener %s: %w", slot, l.Name, err)
		}
		files = append(files, fd)
		names = append(names, l.Name)
	}
	w := &worker{slot: slot, gen: gen, release: release, state: StateStarting, restarts: restarts,
		ready: make(chan struct{}), exited: make(chan struct{}), extend: make(chan time.Duration, 1)}
	var backendFile *os.File
	if s.cfg.WorkerListen != "" {
		addr := expand(s.cfg.WorkerListen, slot, gen)
		spec, err := listenfd.ParseSpec(addr)
		if err != nil {
			return nil, fmt.Errorf("--worker-listen %s: %w", addr, err)
		}
		if spec.Network == "unix" && spec.Address[0] == '/' {
			_ = os.Remove(spec.Address) // a stale socket file of a dead worker
			w.backendFS = spec.Address
		}
		backendFile, err = spec.Listen()
		if err != nil {
			return nil, fmt.Errorf("--worker-listen %s: %w", addr, err)
		}
		if w.backendFS != "" {
			var st unix.Stat_t
			if unix.Stat(w.backendFS, &st) == nil {
				w.backendIno = st.Ino
			}
		}
		defer backendFile.Close() // the worker has its own copy
		fd, err := rawFD(backendFile)
		if err != nil {
			return nil, fmt.Errorf("--worker-listen %s: %w", addr, err)
		}
		files = append(files, fd)
		names = append(names, "backend")
		w.backend = addr
	}
	spec := shimSpec{
		Path: release, Argv: s.cfg.Command, NFDs: len(names), Names: names,
		PPID: os.Getpid(), UID: s.cfg.UID, GID: s.cfg.GID, NoFile: s.cfg.MaxFDs, Cgroup: s.cgroup,
		Watchdog: s.cfg.Watchdog > 0,
	}
	env := s.workerEnv(slot, gen, spec)
	pid, exitC, err := s.procs.start(ctx, "/proc/self/exe", []string{"zd-run"}, env, files)
	if err != nil {
		if w.backendFS != "" {
			os.Remove(w.backendFS)
		}
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	w.pid = pid
	w.startedAt = time.Now()
	s.mu.Lock()
	s.workers[pid] = w
	early := s.early[pid]
	delete(s.early, pid)
	s.mu.Unlock()
	s.log.Info("worker started", "slot", slot, "generation", gen, "pid", pid, "release", release)
	s.emit("spawn", w, fmt.Sprintf("worker %d (pid %d) of generation %d started", slot, pid, gen))
	s.wg.Add(1)
	go s.watch(w, exitC)
	for _, m := range early {
		s.applyNotify(w, m)
	}
	if s.cfg.Ready.Kind != "notify" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadyTimeout)
			defer cancel()
			if s.probe(ctx, w) == nil {
				s.markReady(w)
			}
		}()
	}
	s.publish()
	return w, nil
}

func (s *Supervisor) workerEnv(slot, gen int, spec shimSpec) []string {
	env := make([]string, 0, len(s.cfg.Env)+8)
	for _, kv := range s.cfg.Env {
		switch envKey(kv) {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "ZD_SLOT", "ZD_GENERATION", "ZD_STATE_DIR", ShimEnv,
			"WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		env = append(env, kv)
	}
	if s.cfg.Watchdog > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(s.cfg.Watchdog.Microseconds(), 10))
	}
	raw, _ := jsonMarshal(spec)
	env = append(env,
		ShimEnv+"="+string(raw),
		"NOTIFY_SOCKET="+s.notifyPath,
		"ZD_SLOT="+strconv.Itoa(slot),
		"ZD_GENERATION="+strconv.Itoa(gen),
		"ZD_STATE_DIR="+s.cfg.StateDir,
	)
	return env
}

func envKey(kv string) string {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i]
		}
	}
	return kv
}

// watch waits for the worker's exit and hands it to onExit.
func (s *Supervisor) watch(w *worker, exitC <-chan unix.WaitStatus) {
	defer s.wg.Done()
	var ws unix.WaitStatus
	select {
	case ws = <-exitC:
	case <-s.procsDone:
		return
	}
	s.onExit(w, ws)
}

// markReady records that w is ready (READY=1 or a probe passed).
func (s *Supervisor) markReady(w *worker) {
	s.mu.Lock()
	if w.readyOnce || w.state != StateStarting {
		s.mu.Unlock()
		return
	}
	w.readyOnce = true
	w.state = StateReady
	w.readyAt = time.Now()
	w.pinged = w.readyAt
	close(w.ready)
	held := s.readyHeld
	s.readyHeld = false
	s.mu.Unlock()
	if held {
		s.cfg.Notify("READY=1\nSTATUS=" + s.statusLine())
	}
	s.log.Info("worker ready", "slot", w.slot, "generation", w.gen, "pid", w.pid,
		"after", time.Since(w.startedAt).Round(time.Millisecond))
	s.emit("ready", w, fmt.Sprintf("worker %d (pid %d) of generation %d ready after %v",
		w.slot, w.pid, w.gen, time.Since(w.startedAt).Round(time.Millisecond)))
	s.publish()
}

func (w *worker) readyAtSafe(s *Supervisor) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return w.readyAt
}

// waitReady waits until w is ready, exits, or the ready timeout passes. An
// EXTEND_TIMEOUT_USEC=N from the starting app moves the timeout to N from
// now, up to ten times --ready-timeout in all.
func (s *Supervisor) waitReady(ctx context.Context, w *worker) error {
	t := time.NewTimer(s.cfg.ReadyTimeout)
	defer t.Stop()
	limit := time.Now().Add(10 * s.cfg.ReadyTimeout)
	waited := s.cfg.ReadyTimeout
	for {
		select {
		case d := <-w.extend:
			d = min(d, time.Until(limit))
			t.Reset(d)
			waited = time.Since(w.startedAt) + d
			continue
		case <-w.ready:
			return nil
		case <-w.exited:
			s.mu.Lock()
			desc := w.exitDesc
			s.mu.Unlock()
			return &WorkerError{Slot: w.slot, PID: w.pid, Gen: w.gen, Reason: "exited before it was ready (" + desc + ")",
				Hint: "run the release by hand to see why it fails at start; the old generation keeps serving"}
		case <-t.C:
			return &WorkerError{Slot: w.slot, PID: w.pid, Gen: w.gen, Reason: fmt.Sprintf("not ready after %v", waited.Round(time.Millisecond)),
				Hint: s.readyHint()}
		case <-ctx.Done():
			return fmt.Errorf("worker %d (pid %d): %w", w.slot, w.pid, context.Cause(ctx))
		}
	}
}

func (s *Supervisor) readyHint() string {
	if s.cfg.Ready.Kind == "notify" {
		return "raise --ready-timeout, or check that the app sends READY=1 to NOTIFY_SOCKET (or use --ready tcp:ADDR|http:URL)"
	}
	return "raise --ready-timeout, or check that the app answers " + s.cfg.Ready.String()
}

// WorkerError is a worker that failed to start or to become ready.
type WorkerError struct {
	Slot, PID, Gen int
	Reason         string
	Hint           string
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("worker %d (pid %d) of generation %d %s", e.Slot, e.PID, e.Gen, e.Reason)
}

// stopWorker drains w and stops it: zd-queue drain (when present), the
// --pre-stop hook, the stop signal, then KILL after the grace. It returns
// once the worker is reaped (or a bound of grace + 5s passes).
func (s *Supervisor) stopWorker(ctx context.Context, w *worker, now bool) {
	s.mu.Lock()
	if w.stopping || w.state == StateExited {
		s.mu.Unlock()
		<-w.exited
		return
	}
	w.stopping = true
	w.state = StateDraining
	s.mu.Unlock()
	s.publish()
	if !now {
		s.drainQueue(ctx, w)
		if s.cfg.PreStop != "" {
			if err := s.runHook(ctx, s.cfg.PreStop, w, s.cfg.Grace); err != nil {
				s.log.Warn("--pre-stop failed; stopping the worker anyway", "slot", w.slot, "pid", w.pid, "err", err)
			}
		}
	}
	s.mu.Lock()
	if w.state != StateExited {
		w.state = StateStopping
	}
	s.mu.Unlock()
	s.publish()
	sig := s.cfg.StopSignal
	if now {
		sig = unix.SIGKILL
	}
	s.emit("stop", w, fmt.Sprintf("worker %d (pid %d) of generation %d: sending %s", w.slot, w.pid, w.gen, unix.SignalName(sig)))
	_ = unix.Kill(w.pid, sig)
	t := time.NewTimer(s.cfg.Grace)
	defer t.Stop()
	select {
	case <-w.exited:
		return
	case <-t.C:
		s.log.Warn("worker still running after the grace; killing it", "slot", w.slot, "pid", w.pid, "grace", s.cfg.Grace)
	}
	_ = unix.Kill(w.pid, unix.SIGKILL)
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
		s.log.Error("worker did not die after SIGKILL", "slot", w.slot, "pid", w.pid)
	}
}

// removeBackend removes w's backend socket file if it is still the one w's
// spawn created (not a successor's at the same path).
func (w *worker) removeBackend() {
	if w.backendFS == "" {
		return
	}
	var st unix.Stat_t
	if unix.Stat(w.backendFS, &st) == nil && (w.backendIno == 0 || st.Ino == w.backendIno) {
		os.Remove(w.backendFS)
	}
}
