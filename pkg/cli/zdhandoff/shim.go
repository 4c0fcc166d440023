package zdhandoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/handoff"
	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// The shim is a re-execution of zd-handoff whose only job is
// listenfd.ExecFDs. serve starts its child through it, so that LISTEN_PID
// is the child's own pid; take and listen use it only where listenfd.Exec
// cannot move descriptors safely in the running process (no unshare).
// The shim learns what to do from the environment:
//
//	ZD_HANDOFF_SHIM=1             this process is the shim
//	ZD_HANDOFF_SHIM_FDS=7,9       the descriptors to pass, in order
//	ZD_HANDOFF_SHIM_NAMES=a:b     their names
//	ZD_HANDOFF_SHIM_CONN=5        (take --release) the connection to the server,
//	                              told about a failed exec; it survives the exec,
//	                              named by ZD_HANDOFF_RELEASE_FD
//
// and argv is [zd-handoff PATH ARGV0 ARGS...].
const (
	envShim      = "ZD_HANDOFF_SHIM"
	envShimFDs   = "ZD_HANDOFF_SHIM_FDS"
	envShimNames = "ZD_HANDOFF_SHIM_NAMES"
	envShimConn  = "ZD_HANDOFF_SHIM_CONN"
)

// selfExe is this program's image, even if the file was replaced since.
const selfExe = "/proc/self/exe"

// cleanEnv returns env without shim variables and stale LISTEN_*.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case envShim, envShimFDs, envShimNames, envShimConn, handoff.EnvReleaseFD, listenfd.EnvFDs, listenfd.EnvPID, listenfd.EnvFDNames:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// shimEnv returns cleanEnv(env) plus the shim variables for fds.
func shimEnv(env []string, fds []int, names []string, conn int) []string {
	out := cleanEnv(env)
	ss := make([]string, len(fds))
	for i, fd := range fds {
		ss[i] = strconv.Itoa(fd)
	}
	out = append(out, envShim+"=1", envShimFDs+"="+strings.Join(ss, ","), envShimNames+"="+strings.Join(names, ":"))
	if conn >= 0 {
		out = append(out, envShimConn+"="+strconv.Itoa(conn))
	}
	return out
}

// rawFDs returns the descriptor numbers and names of files without
// touching their blocking mode.
func rawFDs(files []*os.File) ([]int, []string, error) {
	fds := make([]int, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, nil, err
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = int(fd) }); err != nil {
			return nil, nil, err
		}
		names[i] = f.Name()
		if names[i] == "" {
			names[i] = listenfd.UnknownName
		}
	}
	return fds, names, nil
}

func setCloexec(fd int, on bool) error {
	fl := 0
	if on {
		fl = unix.FD_CLOEXEC
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, fl)
	return err
}

// execInPlace replaces this process (same pid) with path, the files at
// 3, 4, ... and LISTEN_* set. conn, if not nil, survives the exec above
// the files, its number in $ZD_HANDOFF_RELEASE_FD (take --release). It
// returns only on error, with the process intact.
func execInPlace(path string, argv []string, files []*os.File, conn *net.UnixConn) error {
	env := cleanEnv(os.Environ())
	if conn != nil {
		connFD := -1
		if rc, err := conn.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { connFD = int(fd) })
		}
		// Not close-on-exec: take starts no process in between.
		hi, err := unix.FcntlInt(uintptr(connFD), unix.F_DUPFD, listenfd.FirstFD+len(files))
		if err != nil {
			return fmt.Errorf("exec %s: keep the handoff connection: %w", path, err)
		}
		env = append(env, handoff.EnvReleaseFD+"="+strconv.Itoa(hi))
		err = listenfd.Exec(path, argv, env, files)
		unix.Close(hi) // not to leak into the shim as a second copy
		if !errors.Is(err, listenfd.ErrNetpoller) {
			return err
		}
		return execViaShim(path, argv, files, conn)
	}
	err := listenfd.Exec(path, argv, env, files)
	if !errors.Is(err, listenfd.ErrNetpoller) {
		return err
	}
	// No private descriptor table here: go through the shim, a fresh image
	// whose runtime has not taken any of the slots (usually).
	return execViaShim(path, argv, files, conn)
}

// execViaShim is execInPlace by way of the shim. conn, if not nil, goes
// through the shim's exec to the command's (see runShim), and is told if
// that exec fails.
func execViaShim(path string, argv []string, files []*os.File, conn *net.UnixConn) error {
	fds, names, err := rawFDs(files)
	if err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	connFD := -1
	if conn != nil {
		rc, err := conn.SyscallConn()
		if err != nil {
			return fmt.Errorf("exec %s: %w", path, err)
		}
		rc.Control(func(fd uintptr) { connFD = int(fd) })
	}
	keep := append(append([]int{}, fds...), connFD)
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	for _, fd := range keep {
		if fd >= 0 {
			if err := setCloexec(fd, false); err != nil {
				return fmt.Errorf("exec %s: fd %d: %w", path, fd, err)
			}
		}
	}
	err = unix.Exec(selfExe, append([]string{"zd-handoff", path}, argv...), shimEnv(os.Environ(), fds, names, connFD))
	for _, fd := range keep {
		if fd >= 0 {
			setCloexec(fd, true)
		}
	}
	return fmt.Errorf("exec %s (through %s): %w", path, selfExe, err)
}

// startShim starts a child that runs path with the files at 3, 4, ...
// and LISTEN_PID its own pid. The files keep their blocking mode (no Fd
// calls: os/exec's ExtraFiles would set them blocking, under the feet of
// every other process sharing them).
func startShim(path string, argv []string, files []*os.File, extraEnv []string) (*os.Process, error) {
	fds, names, err := rawFDs(files)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	childFDs := make([]int, len(fds))
	sysFiles := []uintptr{0, 1, 2}
	for i, fd := range fds {
		sysFiles = append(sysFiles, uintptr(fd))
		childFDs[i] = listenfd.FirstFD + i
	}
	pid, err := syscall.ForkExec(selfExe, append([]string{"zd-handoff", path}, argv...), &syscall.ProcAttr{
		Env:   append(shimEnv(withoutKeys(os.Environ(), extraEnv), childFDs, names, -1), extraEnv...),
		Files: sysFiles,
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return os.FindProcess(pid)
}

// runShim is the whole life of the shim: put the descriptors in place and
// exec. It returns (exit code 1) only if the exec failed.
func runShim(args []string, io cmdkit.IO) int {
	fds, names, conn, err := parseShimEnv(io.Getenv)
	if err == nil && len(args) < 3 {
		err = fmt.Errorf("shim started with %d arguments, want at least 3", len(args))
	}
	if err == nil {
		env := cleanEnv(os.Environ())
		if conn >= 0 {
			// Out of the way of 3, 4, ...; it survives the exec (release).
			var hi int
			hi, err = unix.FcntlInt(uintptr(conn), unix.F_DUPFD, listenfd.FirstFD+len(fds))
			if err == nil {
				unix.Close(conn)
				conn = hi
				env = append(env, handoff.EnvReleaseFD+"="+strconv.Itoa(hi))
			}
		}
		if err == nil {
			err = listenfd.ExecFDs(args[1], args[2:], env, fds, names)
		}
	}
	path := "the command"
	if len(args) > 1 {
		path = args[1]
	}
	if conn >= 0 {
		tellFailed(conn, err)
	}
	return cmdkit.Report(io.Stderr, "zd-handoff", cmdkit.Wrap(err, cmdkit.ExitFailure,
		"check that "+path+" is an executable the kernel can run (a binary, or a script with a valid #! line)"))
}

func parseShimEnv(getenv func(string) string) (fds []int, names []string, conn int, err error) {
	conn = -1
	if s := getenv(envShimFDs); s != "" {
		for _, f := range strings.Split(s, ",") {
			fd, err := strconv.Atoi(f)
			if err != nil || fd < 0 {
				return nil, nil, -1, fmt.Errorf("shim: bad %s=%q", envShimFDs, s)
			}
			fds = append(fds, fd)
		}
	}
	if s := getenv(envShimNames); s != "" || len(fds) > 0 {
		names = strings.Split(s, ":")
		if len(names) != len(fds) {
			return nil, nil, -1, fmt.Errorf("shim: %d names for %d fds", len(names), len(fds))
		}
	}
	if s := getenv(envShimConn); s != "" {
		if conn, err = strconv.Atoi(s); err != nil || conn < 0 {
			return nil, nil, -1, fmt.Errorf("shim: bad %s=%q", envShimConn, s)
		}
	}
	return fds, names, conn, nil
}

// tellFailed reports a failed exec to the server over the raw connection.
func tellFailed(fd int, execErr error) {
	f := os.NewFile(uintptr(fd), "handoff")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return
	}
	defer nc.Close()
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	handoff.SendStatus(ctx, uc, handoff.Status{V: handoff.Version, Op: handoff.OpFailed, Error: execErr.Error()})
}

// withoutKeys returns env without the variables that extra sets.
func withoutKeys(env, extra []string) []string {
	if len(extra) == 0 {
		return env
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, e := range extra {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				drop = true
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
