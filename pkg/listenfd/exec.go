package listenfd

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec replaces the process image with path (argv, env), keeping the pid,
// with files at descriptors 3, 4, ... (not close-on-exec) and LISTEN_FDS,
// LISTEN_PID (this pid) and LISTEN_FDNAMES (the files' Name()s, ""
// meaning UnknownName) set in env in place of any stale LISTEN_* entries.
// It returns only on error; the files are then still open and usable.
//
// It never changes the blocking mode of a file (it does not call Fd).
// Whatever else is open at 3, 4, ... is replaced in the new image. The
// moves happen on a dedicated thread with a private copy of the descriptor
// table, so the Go runtime's own descriptors stay intact until execve and
// a failed exec leaves the process as it was. Where unsharing the table is
// forbidden (some seccomp profiles), Exec moves descriptors in the shared
// table instead, and refuses with an error if that would replace the
// runtime's netpoller (an epoll or eventfd descriptor at 3, 4, ...): call
// it then from a fresh process, a re-exec shim started with the files as
// ExtraFiles.
func Exec(path string, argv []string, env []string, files []*os.File) error {
	fds := make([]int, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return fmt.Errorf("exec %s: file %d (%s): %w", path, i, f.Name(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
			return fmt.Errorf("exec %s: file %d (%s): %w", path, i, f.Name(), err)
		}
		names[i] = f.Name()
	}
	err := ExecFDs(path, argv, env, fds, names)
	runtime.KeepAlive(files)
	return err
}

// ExecFDs is Exec for raw descriptors: fds[i] goes to 3+i named names[i]
// (names may be nil). Use it where wrapping descriptors in *os.File would
// register them with the netpoller, as in a shim's first instructions.
func ExecFDs(path string, argv []string, env []string, fds []int, names []string) error {
	n := len(fds)
	if names == nil {
		names = make([]string, n)
	}
	if len(names) != n {
		return fmt.Errorf("exec %s: %d names for %d fds", path, len(names), n)
	}
	if n > MaxFDs {
		return fmt.Errorf("exec %s: %d fds, at most %d", path, n, MaxFDs)
	}
	if err := checkNames(names); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	newEnv := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if strings.HasPrefix(kv, EnvFDs+"=") || strings.HasPrefix(kv, EnvPID+"=") || strings.HasPrefix(kv, EnvFDNames+"=") {
			continue
		}
		newEnv = append(newEnv, kv)
	}
	if n > 0 {
		newEnv = append(newEnv, Env(names)...)
		newEnv = append(newEnv, EnvPID+"="+strconv.Itoa(os.Getpid()))
	}
	if err := execPrivate(path, argv, newEnv, fds); !errors.Is(err, errNoUnshare) {
		return err
	}
	// No private descriptor table (unshare is forbidden, as under Docker's
	// default seccomp profile): arrange the shared one, unless that would
	// replace the Go runtime's own descriptors.
	for t := FirstFD; t < FirstFD+n; t++ {
		if err := checkNotRuntime(t, fds); err != nil {
			return fmt.Errorf("exec %s: %w", path, err)
		}
	}
	// Nobody may fork while descriptors sit at 3.. without close-on-exec.
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	m, err := arrange(fds)
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	err = unix.Exec(path, argv, newEnv)
	m.restore()
	return fmt.Errorf("exec %s: %w", path, err)
}

var errNoUnshare = errors.New("no private descriptor table")

// ErrNetpoller is wrapped by Exec's refusal to replace the Go runtime's
// netpoller descriptors (only possible where unshare is forbidden). The
// caller can then exec through a re-exec shim instead.
var ErrNetpoller = errors.New("the fds to pass would replace the Go runtime's netpoller")

// execPrivate arranges the descriptors and execs on a thread of its own
// that has first unshared its descriptor table (unshare CLONE_FILES): the
// moves happen in that private copy, so the Go runtime's descriptors (its
// netpoller), used by the other threads, are never touched, and execve
// makes the private table the process's. If the exec fails, the thread
// and its table are thrown away and the process is as before. It returns
// errNoUnshare when the kernel (or a seccomp filter) refuses the unshare.
func execPrivate(path string, argv, env []string, fds []int) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's end terminates the thread, and
		// its private table with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			errc <- fmt.Errorf("%w: unshare: %v", errNoUnshare, err)
			return
		}
		if _, err := arrange(fds); err != nil {
			errc <- fmt.Errorf("exec %s: %w", path, err)
			return
		}
		errc <- fmt.Errorf("exec %s: %w", path, unix.Exec(path, argv, env))
	}()
	return <-errc
}

// checkNotRuntime refuses a slot held by an epoll or eventfd descriptor
// that is not one of the fds to pass: in a Go process that is the netpoller.
func checkNotRuntime(slot int, fds []int) error {
	for _, fd := range fds {
		if fd == slot {
			return nil
		}
	}
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(slot))
	if err != nil {
		return nil // not open (or no /proc): nothing to protect
	}
	if link == "anon_inode:[eventpoll]" || link == "anon_inode:[eventfd]" {
		return fmt.Errorf("fd %d is this process's %s: %w; exec from a fresh process (a re-exec shim) instead",
			slot, link, ErrNetpoller)
	}
	return nil
}

// moves records what arrange changed so a failed execve can be undone.
type moves struct {
	high  []int // copies of the fds to pass, above every target slot
	saved []int // copies of what was open at each slot before, or -1
	flags []int // descriptor flags of what was open at each slot
	moved int   // slots written so far
	srcs  []int // sources above the slots, made close-on-exec
	srcFl []int // their descriptor flags before
}

// arrange puts fds[i] at 3+i without close-on-exec. Every source is first
// copied above the target range, because a source may sit on another's
// target.
func arrange(fds []int) (*moves, error) {
	n := len(fds)
	top := FirstFD + n
	m := &moves{high: make([]int, 0, n), saved: make([]int, n), flags: make([]int, n)}
	for i := range m.saved {
		m.saved[i] = -1
	}
	for _, fd := range fds {
		h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, top)
		if err != nil {
			m.restore()
			return nil, fmt.Errorf("duplicate fd %d: %w", fd, err)
		}
		m.high = append(m.high, h)
	}
	for _, fd := range fds {
		// A source outside the slots must not leak into the new image as a
		// second copy.
		if fd < top || slices.Contains(m.srcs, fd) {
			continue
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, fl|unix.FD_CLOEXEC)
		}
		if err != nil {
			m.restore()
			return nil, fmt.Errorf("set close-on-exec on fd %d: %w", fd, err)
		}
		m.srcs, m.srcFl = append(m.srcs, fd), append(m.srcFl, fl)
	}
	for i := range m.saved {
		slot := FirstFD + i
		fl, err := unix.FcntlInt(uintptr(slot), unix.F_GETFD, 0)
		if err != nil {
			continue // free
		}
		s, err := unix.FcntlInt(uintptr(slot), unix.F_DUPFD_CLOEXEC, top)
		if err != nil {
			m.restore()
			return nil, fmt.Errorf("save fd %d: %w", slot, err)
		}
		m.saved[i], m.flags[i] = s, fl
	}
	for i, h := range m.high {
		if err := unix.Dup3(h, FirstFD+i, 0); err != nil {
			m.restore()
			return nil, fmt.Errorf("move fd %d to %d: %w", fds[i], FirstFD+i, err)
		}
		m.moved = i + 1
	}
	return m, nil
}

// restore puts back what was open at each slot and closes the copies.
func (m *moves) restore() {
	for i, s := range m.saved {
		slot := FirstFD + i
		if s < 0 {
			if i < m.moved {
				unix.Close(slot)
			}
			continue
		}
		flags := 0
		if m.flags[i]&unix.FD_CLOEXEC != 0 {
			flags = unix.O_CLOEXEC
		}
		unix.Dup3(s, slot, flags)
		unix.Close(s)
	}
	for _, h := range m.high {
		unix.Close(h)
	}
	for i, fd := range m.srcs {
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, m.srcFl[i])
	}
}
