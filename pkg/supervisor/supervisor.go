package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
	"github.com/zdtools/zd/pkg/statedir"
	"golang.org/x/sys/unix"
)

// NotifySock is the name of the workers' sd_notify socket in the state dir.
const NotifySock = "notify.sock"

// Supervisor runs the workers of one service. Its state is guarded by mu;
// long operations (reloads, stops) run on the caller's goroutine and take
// the reload lock (the reloading flag) so that they never interleave.
type Supervisor struct {
	cfg        Config
	log        *slog.Logger
	procs      *procs
	procsDone  chan struct{}
	devNull    *os.File
	notify     *sdnotify.Receiver
	notifyPath string
	cgroup     string
	tablePath  string

	ctx    context.Context // the supervisor's life; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pubMu   sync.Mutex    // guards the pub* fields
	pubWant uint64        // table versions asked for
	pubDone uint64        // table version last written
	pubWake chan struct{} // closed (and replaced) after each write
	pubC    chan struct{} // wakes the publisher

	mu           sync.Mutex
	workers      map[int]*worker // live (not yet reaped) workers by pid
	slots        []*worker       // the worker serving each slot, nil while empty
	gen          int             // current generation
	lastGen      int             // highest generation number handed out
	gens         []genRecord     // every generation started, oldest first
	reloading    bool
	reloadGen    int
	reloadWhat   string        // what the reload lock is held for, for health and refusals
	reloadFail   chan struct{} // closed when a worker of reloadGen dies during the reload
	reloadErr    error
	reloadCancel context.CancelFunc
	startCancel  context.CancelFunc // cuts the first generation's readiness wait short
	readyHeld    bool               // READY=1 waits for the first ready worker (none was at start)
	stopping     bool
	stopC        chan bool // stop requests: true = now
	restarts     []time.Time
	slotCrashes  []int
	degraded     string
	lastReload   *runapi.ReloadResult
	// rolledBackFrom is the release the last rollback left: a plain reload
	// refuses to deploy it again (see Reload).
	rolledBackFrom string
	stopStarted    time.Time
	upgrades       int
	started        time.Time
	subs           map[chan runapi.Event]struct{}
	early          map[int][]sdnotify.Message // notifications that arrived before their worker was recorded
}

type genRecord struct {
	Gen     int    `msgpack:"gen"`
	Release string `msgpack:"release"`
}

// New prepares a supervisor: it checks the config, creates the workers'
// notify socket in the state dir and the forking thread. Run starts the
// workers. The state dir must exist (statedir.Ensure).
func New(cfg Config) (*Supervisor, error) {
	cfg.setDefaults()
	if len(cfg.Command) == 0 {
		return nil, errors.New("no command to run")
	}
	s := &Supervisor{
		cfg:         cfg,
		log:         cfg.Logger,
		workers:     map[int]*worker{},
		slots:       make([]*worker, cfg.Workers),
		slotCrashes: make([]int, cfg.Workers),
		subs:        map[chan runapi.Event]struct{}{},
		early:       map[int][]sdnotify.Message{},
		pubC:        make(chan struct{}, 1),
		pubWake:     make(chan struct{}),
		stopC:       make(chan bool, 4),
		procsDone:   make(chan struct{}),
		tablePath:   filepath.Join(cfg.StateDir, statedir.WorkersFile),
		started:     time.Now(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var err error
	if s.devNull, err = os.Open(os.DevNull); err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	if cfg.CPULimit > 0 {
		if s.cgroup, err = makeCgroup(cfg.Name, cfg.CPULimit); err != nil {
			s.devNull.Close()
			return nil, err
		}
	}
	s.notifyPath = filepath.Join(cfg.StateDir, NotifySock)
	if cfg.UID >= 0 || cfg.GID >= 0 {
		// Workers of another user cannot reach into the 0700 state dir: use
		// an abstract socket. Anyone may send to it, but messages are
		// attributed by the kernel-checked sender pid, so only workers count.
		s.notifyPath = fmt.Sprintf("@zd-run/%s/%d/notify", cfg.Name, os.Getpid())
	}
	if cfg.Inherit != nil && cfg.Inherit.Notify != nil {
		s.notify, err = sdnotify.FromFile(cfg.Inherit.Notify)
	} else {
		s.notify, err = sdnotify.Listen(s.notifyPath)
	}
	if err != nil {
		s.devNull.Close()
		return nil, fmt.Errorf("workers' notify socket: %w", err)
	}
	if cfg.Inherit != nil && cfg.Inherit.Notify != nil {
		s.notifyPath = s.notify.Path()
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	s.procs = newProcs(s.log, true, cfg.Forker)
	return s, nil
}

// Run starts generation 1 and supervises until Stop is called or ctx ends
// (which stops gracefully too). It returns after every worker is gone.
func (s *Supervisor) Run(ctx context.Context) error {
	s.wg.Add(2)
	go s.receiveNotify()
	go s.publisher()
	if s.cfg.MaxMemory > 0 || s.cfg.Watchdog > 0 {
		s.wg.Add(1)
		go s.memoryWatch()
	}
	if s.cfg.SelfWatchdog > 0 {
		s.wg.Add(1)
		go s.selfWatchdog()
	}
	adopted := s.adopted()
	if !adopted {
		if err := s.startFirst(ctx); err != nil {
			s.shutdown(true)
			return err
		}
	}
	s.notifyReadyOrHold(adopted)
	var now bool
	select {
	case now = <-s.stopC:
	case <-ctx.Done():
	}
	s.cfg.Notify("STOPPING=1\nSTATUS=stopping")
	s.shutdown(now)
	return nil
}

// notifyReadyOrHold tells zd-run's own supervisor (systemd) READY=1 when a
// worker is ready. When none is (the first generation did not get ready
// within --ready-timeout), READY=1 waits for the first worker that does
// (markReady), so that systemd's start timeout, not a false READY=1, decides.
// Workers adopted from the zd-run this one replaced (an upgrade in place)
// count as ready: the service was ready before.
func (s *Supervisor) notifyReadyOrHold(adopted bool) {
	s.mu.Lock()
	ready := adopted
	for _, w := range s.slots {
		ready = ready || (w != nil && w.state == StateReady)
	}
	s.readyHeld = !ready
	s.mu.Unlock()
	if ready {
		s.cfg.Notify("READY=1\nSTATUS=" + s.statusLine())
		return
	}
	s.log.Warn("no worker is ready: READY=1 to the service manager waits for the first one")
	s.cfg.Notify("STATUS=waiting for a ready worker; " + s.statusLine())
}

// startFirst starts generation 1 in every slot and waits (bounded) for it to
// be ready. A worker that fails is respawned by the usual path; startFirst
// fails only when the command cannot be started at all.
func (s *Supervisor) startFirst(ctx context.Context) error {
	release, err := s.resolveRelease()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.gen = 1
	s.gens = append(s.gens, genRecord{Gen: 1, Release: release})
	s.mu.Unlock()
	var started []*worker
	for slot := range s.cfg.Workers {
		w, err := s.spawn(ctx, slot, 1, release, 0)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.slots[slot] = w
		s.mu.Unlock()
		started = append(started, w)
	}
	// One bound for the whole generation, cut short by Stop.
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	s.mu.Lock()
	s.startCancel = cancel
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		cancel()
	}
	for _, w := range started {
		if err := s.waitReady(wctx, w); err != nil {
			s.log.Warn("first generation not ready", "err", err)
		}
	}
	s.mu.Lock()
	s.startCancel = nil
	s.mu.Unlock()
	s.publish()
	return nil
}

// Stop asks Run to stop: drain every worker (now=false) or KILL them
// (now=true). A second graceful Stop during a stop forces it.
func (s *Supervisor) Stop(now bool) { s.StopBy(now, "") }

// StopBy is Stop, logging who asked ("signal TERM", "zdctl (pid 42, uid
// 0)"; "" says nothing about it).
func (s *Supervisor) StopBy(now bool, by string) {
	if by == "" {
		by = "the caller"
	}
	s.mu.Lock()
	already := s.stopping
	if !already {
		s.stopStarted = time.Now()
	}
	s.stopping = true
	cancel, startCancel := s.reloadCancel, s.startCancel
	s.mu.Unlock()
	switch {
	case !already:
		s.log.Info("stop requested", "by", by, "now", now)
	case now:
		s.log.Warn("stop forced: killing the workers", "by", by)
	default:
		s.log.Info("stop requested again; already stopping", "by", by)
	}
	if cancel != nil {
		cancel()
	}
	if startCancel != nil {
		startCancel()
	}
	if already {
		if now {
			s.killAll()
		}
		return
	}
	select {
	case s.stopC <- now:
	default:
	}
}

// killAll sends KILL to every live worker (the second TERM, or QUIT during a stop).
func (s *Supervisor) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid := range s.workers {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// shutdown stops every worker, in parallel, then releases the supervisor.
func (s *Supervisor) shutdown(now bool) {
	s.mu.Lock()
	s.stopping = true
	live := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		live = append(live, w)
	}
	begun := s.stopStarted
	if begun.IsZero() {
		begun = time.Now()
	}
	s.mu.Unlock()
	s.emit("stopping", nil, fmt.Sprintf("stopping %d workers", len(live)))
	var wg sync.WaitGroup
	for _, w := range live {
		wg.Add(1)
		go func() { defer wg.Done(); s.stopWorker(s.ctx, w, now) }()
	}
	wg.Wait()
	s.publish()
	s.close()
	s.log.Info("stopped", "workers", len(live), "duration", time.Since(begun).Round(time.Millisecond))
}

func (s *Supervisor) close() {
	s.cancel()
	s.notify.Close()
	close(s.procsDone)
	s.wg.Wait()
	s.procs.close()
	s.devNull.Close()
	if s.cgroup != "" {
		_ = os.Remove(s.cgroup)
	}
}

// receiveNotify attributes sd_notify messages to workers by sender pid.
func (s *Supervisor) receiveNotify() {
	defer s.wg.Done()
	for {
		m, err := s.notify.Receive(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, sdnotify.ErrClosed) {
				return
			}
			s.log.Debug("notify socket", "err", err)
			continue
		}
		s.mu.Lock()
		w := s.workers[m.PID]
		if w == nil && m.PID > 0 {
			// A fast worker can notify before spawn has recorded its pid:
			// keep the message (bounded) for spawn to apply.
			if len(s.early) >= 256 {
				clear(s.early)
			}
			s.early[m.PID] = append(s.early[m.PID], m)
		}
		s.mu.Unlock()
		if w == nil {
			s.log.Debug("notify from a pid not (yet) known", "pid", m.PID, "msg", string(m.Raw))
			continue
		}
		s.applyNotify(w, m)
	}
}

// applyNotify applies one sd_notify message of worker w.
func (s *Supervisor) applyNotify(w *worker, m sdnotify.Message) {
	if st, ok := m.Get(sdnotify.KeyStatus); ok {
		s.mu.Lock()
		w.status = st
		s.mu.Unlock()
	}
	if v, ok := m.Get(sdnotify.KeyWatchdog); ok {
		s.mu.Lock()
		if v == "trigger" {
			w.hung = "it sent WATCHDOG=trigger"
		} else {
			w.pinged = time.Now()
		}
		s.mu.Unlock()
	}
	if v, ok := m.Get(sdnotify.KeyExtendTimeoutUsec); ok {
		if us, err := strconv.ParseInt(v, 10, 64); err == nil && us > 0 {
			select {
			case w.extend <- time.Duration(us) * time.Microsecond:
			default:
			}
		}
	}
	if m.Is(sdnotify.KeyReady) && s.cfg.Ready.Kind == "notify" {
		s.markReady(w)
	}
}

// onExit records a reaped worker and decides what follows: nothing (we
// stopped it), a reload abort (a new-generation worker died during a
// reload), or a respawn with backoff within the limits.
func (s *Supervisor) onExit(w *worker, ws unix.WaitStatus) {
	desc := describeExit(ws)
	s.mu.Lock()
	w.state = StateExited
	w.exitDesc = desc
	delete(s.workers, w.pid)
	close(w.exited)
	crash := !w.stopping && !s.stopping
	current := s.slots[w.slot] == w
	if current {
		s.slots[w.slot] = nil
	}
	var abortReload, respawn bool
	var delay time.Duration
	if crash && s.reloading && w.gen == s.reloadGen {
		abortReload = true
		if s.reloadErr == nil {
			reason := "exited during the reload (" + desc + ")"
			hint := "the new release crashes; the old generation keeps serving, fix the release or run zdctl rollback"
			if !w.readyOnce {
				reason = "exited before it was ready (" + desc + ")"
				hint = "run the release by hand to see why it fails at start; the old generation keeps serving"
			}
			s.reloadErr = &WorkerError{Slot: w.slot, PID: w.pid, Gen: w.gen, Reason: reason, Hint: hint}
			close(s.reloadFail)
		}
	} else if crash && current {
		respawn, delay = s.respawnPlan(w)
	}
	s.mu.Unlock()
	w.removeBackend()
	if crash {
		s.log.Warn("worker exited", "slot", w.slot, "generation", w.gen, "pid", w.pid, "status", desc)
	} else {
		s.log.Info("worker stopped", "slot", w.slot, "generation", w.gen, "pid", w.pid, "status", desc)
	}
	s.emit("exit", w, fmt.Sprintf("worker %d (pid %d) of generation %d: %s", w.slot, w.pid, w.gen, desc))
	_ = abortReload
	if respawn {
		s.wg.Add(1)
		go s.respawnAfter(w, delay)
	}
	s.publish()
}

// respawnPlan (mu held) applies --no-respawn and the respawn limit and
// picks the backoff delay: 100ms doubling per consecutive crash of the slot,
// at most 10s; a worker that was ready for 10s resets its slot's count.
func (s *Supervisor) respawnPlan(w *worker) (bool, time.Duration) {
	if s.cfg.NoRespawn {
		s.degraded = fmt.Sprintf("worker %d exited and --no-respawn is set", w.slot)
		s.log.Warn("not respawned (--no-respawn); slot left empty", "slot", w.slot, "generation", w.gen)
		return false, 0
	}
	now := time.Now()
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < s.cfg.RespawnWindow {
			kept = append(kept, t)
		}
	}
	s.restarts = kept
	if len(s.restarts) >= s.cfg.RespawnLimit {
		s.degraded = fmt.Sprintf("respawn limit reached (%d restarts in %v); slot %d left empty",
			len(s.restarts), s.cfg.RespawnWindow, w.slot)
		s.log.Error("respawn limit reached; slot left empty", "slot", w.slot, "generation", w.gen, "release", w.release,
			"restarts", len(s.restarts), "window", s.cfg.RespawnWindow,
			"hint", "fix the release and zdctl reload (or zdctl rollback); --respawn-limit and --respawn-window set the limit")
		return false, 0
	}
	s.restarts = append(s.restarts, now)
	if !w.readyAt.IsZero() && now.Sub(w.readyAt) > 10*time.Second {
		s.slotCrashes[w.slot] = 0
	}
	n := min(s.slotCrashes[w.slot], 7)
	s.slotCrashes[w.slot]++
	return true, min(100*time.Millisecond<<n, 10*time.Second)
}

func (s *Supervisor) respawnAfter(old *worker, delay time.Duration) {
	defer s.wg.Done()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
		return
	}
	s.mu.Lock()
	skip := s.stopping || s.slots[old.slot] != nil
	s.mu.Unlock()
	if skip {
		return
	}
	w, err := s.spawn(s.ctx, old.slot, old.gen, old.release, old.restarts+1)
	if err != nil {
		s.log.Error("respawn failed", "slot", old.slot, "err", err)
		return
	}
	s.mu.Lock()
	extra := s.slots[old.slot] != nil || s.stopping
	if !extra {
		s.slots[old.slot] = w
	}
	s.mu.Unlock()
	s.emit("respawn", w, fmt.Sprintf("worker %d respawned (pid %d), restart %d", w.slot, w.pid, w.restarts))
	if extra {
		s.stopWorker(s.ctx, w, false)
	}
	s.publish()
}

// Subscribe returns a channel of events (dropped when the reader is slow)
// and a function to unsubscribe.
func (s *Supervisor) Subscribe() (<-chan runapi.Event, func()) {
	ch := make(chan runapi.Event, 256)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

func (s *Supervisor) emit(kind string, w *worker, msg string) {
	e := runapi.Event{TimeUnixMS: time.Now().UnixMilli(), Kind: kind, Message: msg, Slot: -1}
	if w != nil {
		e.Slot, e.Generation, e.PID = w.slot, w.gen, w.pid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- e:
		default:
		}
	}
}
