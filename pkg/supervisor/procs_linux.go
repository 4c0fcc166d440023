package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procs owns every fork and every wait of the supervisor.
//
// Forks: PR_SET_PDEATHSIG fires when the *thread* that forked a child exits,
// and execve (our own in-place upgrade) ends every thread but the caller. So
// every fork and the final self-exec happen on one goroutine locked to its
// OS thread for the life of the process (requests arrive on a channel, as in
// tableflip); with a Forker that goroutine is the main one (see
// ServeForks). Waits: zd-run is a child subreaper, so orphaned grandchildren
// are reparented to it; one reaper loop calls wait4 and hands each exit to
// the waiter registered at fork time. Nothing else in the process may wait
// for children (os/exec's Wait would race the reaper), which is why probes
// and --pre-stop commands are also started here.
type procs struct {
	log     *slog.Logger
	reapAll bool // wait4(-1): we are a subreaper and reap orphans too

	reqC chan forkReq
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	waiters map[int]chan unix.WaitStatus
}

type forkReq struct {
	path  string
	argv  []string
	env   []string
	files []uintptr // fd i of the child is files[i]
	exec  bool      // replace this process instead of forking
	proc  *procs    // whose waiter table registers the child
	reply chan forkReply
}

type forkReply struct {
	pid    int
	exited <-chan unix.WaitStatus
	err    error
}

func newProcs(log *slog.Logger, reapAll bool, fk *Forker) *procs {
	p := &procs{
		log:     log,
		reapAll: reapAll,
		reqC:    make(chan forkReq),
		stop:    make(chan struct{}),
		waiters: map[int]chan unix.WaitStatus{},
	}
	started := make(chan struct{})
	if fk != nil {
		p.reqC = fk.reqC
	} else {
		p.wg.Add(1)
		go p.forker(started)
		<-started
	}
	p.wg.Add(1)
	go p.reaper(started)
	<-started
	return p
}

// close stops the forker and the reaper. Children still running are left
// alone (their exits are no longer collected).
func (p *procs) close() {
	close(p.stop)
	p.wg.Wait()
}

func (p *procs) forker(started chan<- struct{}) {
	defer p.wg.Done()
	// Never unlocked: when this goroutine returns (close), the runtime
	// ends the thread, which is what we want once all children are gone.
	runtime.LockOSThread()
	started <- struct{}{}
	for {
		select {
		case <-p.stop:
			return
		case r := <-p.reqC:
			r.reply <- p.do(r)
		}
	}
}

func (p *procs) do(r forkReq) forkReply {
	if r.exec {
		for i, fd := range r.files {
			if fd != uintptr(i) {
				return forkReply{err: fmt.Errorf("exec %s: fd %d must stay at %d", r.path, fd, i)}
			}
		}
		err := unix.Exec(r.path, r.argv, r.env)
		return forkReply{err: fmt.Errorf("exec %s: %w", r.path, err)}
	}
	attr := &syscall.ProcAttr{
		Env:   r.env,
		Files: r.files,
		Sys: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true, // a terminal's ^C reaches zd-run only; it stops the workers in order
		},
	}
	// Register under the lock: the reaper can only dispatch this pid's exit
	// after taking the same lock, so it always finds the waiter.
	p.mu.Lock()
	defer p.mu.Unlock()
	pid, err := syscall.ForkExec(r.path, r.argv, attr)
	if err != nil {
		return forkReply{err: fmt.Errorf("start %s: %w", r.path, err)}
	}
	ch := make(chan unix.WaitStatus, 1)
	p.waiters[pid] = ch
	return forkReply{pid: pid, exited: ch}
}

// start forks and execs path. files[i] becomes the child's fd i. The
// returned channel yields the exit status once.
func (p *procs) start(ctx context.Context, path string, argv, env []string, files []uintptr) (int, <-chan unix.WaitStatus, error) {
	reply := make(chan forkReply, 1)
	select {
	case p.reqC <- forkReq{path: path, argv: argv, env: env, files: files, proc: p, reply: reply}:
	case <-p.stop:
		return 0, nil, errors.New("supervisor closed")
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	r := <-reply
	return r.pid, r.exited, r.err
}

// execSelf replaces the process image from the forker thread. It returns
// only on failure. files must already sit at their own fd numbers without
// close-on-exec.
func (p *procs) execSelf(path string, argv, env []string) error {
	reply := make(chan forkReply, 1)
	select {
	case p.reqC <- forkReq{path: path, argv: argv, env: env, exec: true, proc: p, reply: reply}:
	case <-p.stop:
		return errors.New("supervisor closed")
	}
	return (<-reply).err
}

// adopt registers a waiter for a child started by an earlier image of this
// process (self-upgrade keeps the pid, so the workers are still our children).
func (p *procs) adopt(pid int) <-chan unix.WaitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan unix.WaitStatus, 1)
	p.waiters[pid] = ch
	return ch
}

func (p *procs) reaper(started chan<- struct{}) {
	defer p.wg.Done()
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	defer signal.Stop(sig)
	// The tick covers a SIGCHLD that arrived before Notify and adopted
	// children that exited while the process image was being replaced.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	started <- struct{}{}
	for {
		select {
		case <-p.stop:
			return
		case <-sig:
		case <-tick.C:
		}
		p.reap()
	}
}

func (p *procs) reap() {
	if p.reapAll {
		for range 10000 {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				return
			}
			p.dispatch(pid, ws)
		}
		return
	}
	p.mu.Lock()
	pids := make([]int, 0, len(p.waiters))
	for pid := range p.waiters {
		pids = append(pids, pid)
	}
	p.mu.Unlock()
	for _, pid := range pids {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			// Not our child (any more): report it gone rather than wait forever.
			p.dispatch(pid, unix.WaitStatus(0xff00))
			continue
		}
		if got == pid {
			p.dispatch(pid, ws)
		}
	}
}

func (p *procs) dispatch(pid int, ws unix.WaitStatus) {
	p.mu.Lock()
	ch, ok := p.waiters[pid]
	delete(p.waiters, pid)
	p.mu.Unlock()
	if !ok {
		p.log.Debug("reaped an orphan", "pid", pid, "status", describeExit(ws))
		return
	}
	ch <- ws
}

// describeExit says how a process ended, for logs and reload errors.
func describeExit(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// rawFD returns f's descriptor number without the side effect of
// (*os.File).Fd, which switches a non-blocking socket to blocking mode: the
// mode is a property of the open file description, so that would change it
// for every process sharing the socket (the workers, a previous or next
// zd-run image). The number stays valid while f is open.
func rawFD(f *os.File) (uintptr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("descriptor of %s: %w", f.Name(), err)
	}
	var fd uintptr
	if err := rc.Control(func(x uintptr) { fd = x }); err != nil {
		return 0, fmt.Errorf("descriptor of %s: %w", f.Name(), err)
	}
	return fd, nil
}
