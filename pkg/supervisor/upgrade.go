package supervisor

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
	"golang.org/x/sys/unix"
)

// UpgradeEnv carries, across zd-run's in-place re-exec, which inherited fd
// is what: "state=7,notify=8,control=9,listen=3,listen=4" (listeners in
// --listen order).
const UpgradeEnv = "ZD_RUN_UPGRADE_FDS"

// Inheritance is what an upgraded zd-run image takes over from the image
// before it: the worker table (from the memfd) and the notify socket.
type Inheritance struct {
	State  []byte
	Notify *os.File
}

// carriedState is the supervisor state that travels in the memfd.
type carriedState struct {
	Version    int                  `msgpack:"v"`
	Gen        int                  `msgpack:"gen"`
	LastGen    int                  `msgpack:"last_gen"`
	Gens       []genRecord          `msgpack:"gens"`
	Upgrades   int                  `msgpack:"upgrades"`
	Started    time.Time            `msgpack:"started"`
	Restarts   []time.Time          `msgpack:"restarts"`
	Degraded   string               `msgpack:"degraded"`
	LastReload *runapi.ReloadResult `msgpack:"last_reload"`
	Workers    []carriedWorker      `msgpack:"workers"`
	// RolledBackFrom: added after version 1 shipped; an image without it
	// ignores it, an image with it reads "" from one without.
	RolledBackFrom string `msgpack:"rolled_back_from"`
}

type carriedWorker struct {
	Slot, Gen, PID int
	Current        bool
	Release        string
	Backend        string
	BackendFS      string
	BackendIno     uint64
	State          string
	StartedAt      time.Time
	ReadyAt        time.Time
	Restarts       int
	Status         string
	Stopping       bool
}

// Upgrade replaces zd-run's own process image in place (same pid, same
// listeners, same running workers): it first runs the binary at SelfPath
// with --check and the same arguments; if that exits 0, it carries its state
// in a memfd and re-execs. extra names fds to carry besides the listeners
// and the notify socket (e.g. "control"); beforeExec runs just before the
// exec (to tell the client). It returns only on failure, with a
// *control.Error (CodeAborted when the new binary failed its check).
func (s *Supervisor) Upgrade(ctx context.Context) (runapi.ReloadResult, error) {
	return s.UpgradeWith(ctx, nil, nil)
}

// UpgradeWith is Upgrade with fds to carry and a hook run just before exec.
func (s *Supervisor) UpgradeWith(ctx context.Context, extra map[string]*os.File, beforeExec func(runapi.ReloadResult)) (runapi.ReloadResult, error) {
	res := runapi.ReloadResult{Strategy: runapi.StrategyHandoff}
	if _, err := s.lockReload("upgrade"); err != nil {
		return res, err
	}
	start := time.Now()
	fail := func(code, hint, format string, a ...any) (runapi.ReloadResult, error) {
		s.unlockReload()
		e := control.Errorf(code, hint, format, a...)
		res.Error, res.Hint = runapi.Text(e.Message), runapi.Text(e.Hint)
		s.emit("abort", nil, "upgrade aborted: "+e.Message)
		s.publish()
		return res, e
	}
	s.emit("upgrade", nil, "checking the new zd-run binary "+s.cfg.SelfPath)
	if err := s.checkSelf(ctx); err != nil {
		return fail(control.CodeAborted, "run the new zd-run with --check and the same flags to see why; the running zd-run and its workers are untouched",
			"upgrade aborted: %s --check failed: %v", s.cfg.SelfPath, err)
	}
	s.mu.Lock()
	st := carriedState{Version: 1, Gen: s.gen, LastGen: s.lastGen, Gens: s.gens, Upgrades: s.upgrades + 1, Started: s.started,
		Restarts: s.restarts, Degraded: s.degraded, LastReload: s.lastReload, RolledBackFrom: s.rolledBackFrom}
	for _, w := range s.workers {
		st.Workers = append(st.Workers, carriedWorker{Slot: w.slot, Gen: w.gen, PID: w.pid, Current: s.slots[w.slot] == w,
			Release: w.release, Backend: w.backend, BackendFS: w.backendFS, BackendIno: w.backendIno, State: w.state, StartedAt: w.startedAt,
			ReadyAt: w.readyAt, Restarts: w.restarts, Status: w.status, Stopping: w.stopping})
	}
	s.mu.Unlock()
	blob, err := msgpack.Marshal(&st)
	if err != nil {
		return fail(control.CodeInternal, "", "upgrade: encode state: %v", err)
	}
	memfd, err := unix.MemfdCreate("zd-run-state", 0)
	if err != nil {
		return fail(control.CodeInternal, "", "upgrade: memfd_create: %v", err)
	}
	mf := os.NewFile(uintptr(memfd), "zd-run-state")
	defer mf.Close()
	if _, err := mf.Write(blob); err != nil {
		return fail(control.CodeInternal, "", "upgrade: write state: %v", err)
	}
	nf, err := s.notify.File()
	if err != nil {
		return fail(control.CodeInternal, "", "upgrade: notify socket: %v", err)
	}
	defer nf.Close()
	// Descriptor numbers through rawFD: (*os.File).Fd would switch the
	// shared listeners (and run.sock) to blocking mode for the workers too.
	fdOf := func(f *os.File) (int, error) {
		fd, err := rawFD(f)
		return int(fd), err
	}
	nfd, err := fdOf(nf)
	if err != nil {
		return fail(control.CodeInternal, "", "upgrade: notify socket: %v", err)
	}
	fds := []string{"state=" + strconv.Itoa(memfd), "notify=" + strconv.Itoa(nfd)}
	keep := []int{memfd, nfd}
	for _, l := range s.cfg.Listeners {
		fd, err := fdOf(l.File)
		if err != nil {
			return fail(control.CodeInternal, "", "upgrade: listener %s: %v", l.Name, err)
		}
		fds = append(fds, "listen="+strconv.Itoa(fd))
		keep = append(keep, fd)
	}
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fd, err := fdOf(extra[name])
		if err != nil {
			return fail(control.CodeInternal, "", "upgrade: %s: %v", name, err)
		}
		fds = append(fds, name+"="+strconv.Itoa(fd))
		keep = append(keep, fd)
	}
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fail(control.CodeInternal, "", "upgrade: keep fd %d open across exec: %v", fd, err)
		}
	}
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		switch envKey(kv) {
		case UpgradeEnv, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, UpgradeEnv+"="+strings.Join(fds, ","))
	res.ReloadSuccessful, res.Upgraded = true, true
	res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	s.mu.Lock()
	res.Generation, res.Release = s.gen, runapi.Text(s.releaseOf(s.gen))
	s.mu.Unlock()
	if p, err := s.resolveRelease(); err == nil && runapi.Text(p) != res.Release {
		res.ResolvesTo = runapi.Text(p)
	}
	s.log.Info("upgrade: re-executing in place", "binary", s.cfg.SelfPath, "pid", os.Getpid())
	s.cfg.Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(sdnotify.MonotonicUsec(), 10) + "\nSTATUS=upgrading zd-run")
	if beforeExec != nil {
		beforeExec(res)
	}
	// HUP and INT stay ignored across execve and the Go runtime keeps an
	// inherited SIG_IGN for them until the new image asks for them, so one
	// arriving during the re-exec is dropped instead of ending zd-run. (TERM
	// and QUIT cannot be covered this way; see README.md, zd-run, "Strategies".)
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT)
	err = s.procs.execSelf(s.cfg.SelfPath, s.cfg.SelfArgs, env)
	if s.cfg.ExecFailed != nil {
		s.cfg.ExecFailed()
	}
	for _, fd := range keep {
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	res.ReloadSuccessful = false
	return fail(control.CodeAborted, "check that the new binary is executable by zd-run's user", "upgrade aborted: %v", err)
}

// checkSelf runs SelfPath --check with our own arguments (bounded).
func (s *Supervisor) checkSelf(ctx context.Context) error {
	argv := append([]string{s.cfg.SelfArgs[0], "--check"}, s.cfg.SelfArgs[1:]...)
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		switch envKey(kv) {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", UpgradeEnv:
			continue
		}
		env = append(env, kv)
	}
	null, err := rawFD(s.devNull)
	if err != nil {
		return err
	}
	pid, exitC, err := s.procs.start(ctx, s.cfg.SelfPath, argv, env, []uintptr{null, 2, 2})
	if err != nil {
		return err
	}
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case ws := <-exitC:
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		return fmt.Errorf("%s", describeExit(ws))
	case <-t.C:
		_ = unix.Kill(pid, unix.SIGKILL)
		<-exitC
		return fmt.Errorf("no answer within 15s")
	}
}

// decodeCarried decodes the state an earlier image carried in the memfd. It
// refuses anything but one version-1 msgpack map, and workers with
// impossible pids or slots.
func decodeCarried(b []byte) (st carriedState, err error) {
	if len(b) == 0 || len(b) > 64<<20 {
		return st, fmt.Errorf("carried state: %d bytes", len(b))
	}
	// msgpack/v5.4.1 panics decoding nil into a time.Time field (found by
	// FuzzDecodeCarried): turn that into an error.
	defer func() {
		if p := recover(); p != nil {
			st, err = carriedState{}, fmt.Errorf("carried state: malformed (%v)", p)
		}
	}()
	if err := msgpack.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("carried state: %w", err)
	}
	if st.Version != 1 {
		return st, fmt.Errorf("carried state: version %d, this build reads 1", st.Version)
	}
	for _, w := range st.Workers {
		if w.PID <= 1 || w.Slot < 0 || w.Slot > 1<<20 {
			return st, fmt.Errorf("carried state: worker with pid %d, slot %d", w.PID, w.Slot)
		}
	}
	return st, nil
}

// adopted restores the state carried by an upgrade (cfg.Inherit), adopting
// the running workers; it reports whether there was any.
func (s *Supervisor) adopted() bool {
	if s.cfg.Inherit == nil {
		return false
	}
	st, err := decodeCarried(s.cfg.Inherit.State)
	if err != nil {
		s.log.Error("upgrade: cannot read the carried state; starting fresh workers", "err", err)
		return false
	}
	s.mu.Lock()
	s.gen, s.lastGen, s.gens, s.upgrades, s.started = st.Gen, st.LastGen, st.Gens, st.Upgrades, st.Started
	s.restarts, s.degraded, s.lastReload, s.rolledBackFrom = st.Restarts, st.Degraded, st.LastReload, st.RolledBackFrom
	var starting []*worker
	for _, c := range st.Workers {
		w := &worker{slot: c.Slot, gen: c.Gen, pid: c.PID, release: c.Release, backend: c.Backend, backendFS: c.BackendFS, backendIno: c.BackendIno,
			state: c.State, startedAt: c.StartedAt, readyAt: c.ReadyAt, restarts: c.Restarts, status: c.Status,
			stopping: c.Stopping, ready: make(chan struct{}), exited: make(chan struct{}), extend: make(chan time.Duration, 1)}
		w.pinged = time.Now() // the watchdog period starts again in the new image
		if w.state != StateStarting {
			w.readyOnce = true
			close(w.ready)
		} else {
			starting = append(starting, w)
		}
		if c.Current && c.Slot < len(s.slots) {
			s.slots[c.Slot] = w
		}
		s.workers[w.pid] = w
		exitC := s.procs.adopt(w.pid)
		s.wg.Add(1)
		go s.watch(w, exitC)
	}
	var empty []int
	for slot, w := range s.slots {
		if w == nil {
			empty = append(empty, slot)
		}
	}
	gen, release := s.gen, s.releaseOf(s.gen)
	s.mu.Unlock()
	s.log.Info("upgrade: adopted the running workers", "workers", len(st.Workers), "generation", st.Gen, "upgrades", st.Upgrades)
	if s.cfg.Ready.Kind != "notify" {
		for _, w := range starting {
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
	}
	for _, slot := range empty {
		s.wg.Add(1)
		go s.respawnAfter(&worker{slot: slot, gen: gen, release: release}, 0)
	}
	s.emit("upgrade", nil, fmt.Sprintf("zd-run upgraded in place (pid %d, upgrade %d); %d workers adopted", os.Getpid(), st.Upgrades, len(st.Workers)))
	s.publish()
	return true
}
