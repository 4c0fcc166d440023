package listenfd

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FirstFD is the first inherited descriptor (SD_LISTEN_FDS_START).
const FirstFD = 3

// MaxFDs bounds LISTEN_FDS. systemd only bounds it by INT_MAX; no process
// can hold more than the kernel's nr_open (1<<20 by default), so more is
// certainly garbage.
const MaxFDs = 1 << 20

// UnknownName is the name systemd gives a descriptor LISTEN_FDNAMES does
// not name.
const UnknownName = "unknown"

// Environment variable names of the protocol.
const (
	EnvFDs     = "LISTEN_FDS"
	EnvPID     = "LISTEN_PID"
	EnvFDNames = "LISTEN_FDNAMES"
)

// ParseEnv reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES through getenv
// as sd_listen_fds_with_names does for a process whose pid is pid. It
// returns:
//   - 0, nil, nil when LISTEN_PID or LISTEN_FDS is unset or empty,
//     LISTEN_FDS is 0, or LISTEN_PID is another process's;
//   - n > 0 and n names (UnknownName for each when LISTEN_FDNAMES is unset
//     or empty);
//   - an error when a value is malformed: LISTEN_PID or LISTEN_FDS not a
//     number, LISTEN_FDS negative or above MaxFDs, or LISTEN_FDNAMES not
//     holding exactly n colon-separated names.
func ParseEnv(getenv func(string) string, pid int) (n int, names []string, err error) {
	ps := getenv(EnvPID)
	if ps == "" {
		return 0, nil, nil
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 1 {
		return 0, nil, fmt.Errorf("%s=%q is not a pid", EnvPID, ps)
	}
	if p != pid {
		return 0, nil, nil
	}
	fs := getenv(EnvFDs)
	if fs == "" {
		return 0, nil, nil
	}
	n, err = strconv.Atoi(fs)
	if err != nil || n < 0 || n > MaxFDs {
		return 0, nil, fmt.Errorf("%s=%q is not a count from 0 to %d", EnvFDs, fs, MaxFDs)
	}
	if n == 0 {
		return 0, nil, nil
	}
	ns := getenv(EnvFDNames)
	if ns == "" {
		names = make([]string, n)
		for i := range names {
			names[i] = UnknownName
		}
		return n, names, nil
	}
	if c := strings.Count(ns, ":") + 1; c != n {
		return 0, nil, fmt.Errorf("%s has %d names for %s=%d", EnvFDNames, c, EnvFDs, n)
	}
	return n, strings.Split(ns, ":"), nil
}

// Inherited returns the sockets systemd-style activation passed to this
// process: descriptors 3 .. 3+LISTEN_FDS-1, named from LISTEN_FDNAMES, each
// set close-on-exec (so they don't leak into children by accident). It
// returns nil, nil when the variables are absent or LISTEN_PID is not this
// process, and an error when they are malformed or name a descriptor that
// is not open. With unset, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are
// removed from the environment whatever the outcome, as sd_listen_fds(1)
// does.
func Inherited(unset bool) ([]*os.File, error) {
	if unset {
		defer func() {
			os.Unsetenv(EnvPID)
			os.Unsetenv(EnvFDs)
			os.Unsetenv(EnvFDNames)
		}()
	}
	n, names, err := ParseEnv(os.Getenv, os.Getpid())
	if err != nil || n == 0 {
		return nil, err
	}
	for fd := FirstFD; fd < FirstFD+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("%s=%d but fd %d: %w", EnvFDs, n, fd, err)
		}
	}
	files := make([]*os.File, n)
	for i := range files {
		fd := FirstFD + i
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("set close-on-exec on fd %d: %w", fd, err)
		}
	}
	for i := range files {
		files[i] = os.NewFile(uintptr(FirstFD+i), names[i])
	}
	return files, nil
}

// Env returns the LISTEN_FDS and LISTEN_FDNAMES entries for a child whose
// descriptors 3, 4, ... are named names ("" becomes UnknownName). There is
// no LISTEN_PID: only the child knows its pid, so whoever execs it in place
// adds it (Exec does). It returns nil for no names.
func Env(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	ns := make([]string, len(names))
	for i, n := range names {
		if n == "" {
			n = UnknownName
		}
		ns[i] = n
	}
	return []string{
		EnvFDs + "=" + strconv.Itoa(len(names)),
		EnvFDNames + "=" + strings.Join(ns, ":"),
	}
}

// checkNames validates names for LISTEN_FDNAMES ("" allowed: it becomes
// UnknownName).
func checkNames(names []string) error {
	for i, n := range names {
		if n == "" {
			continue
		}
		if err := ValidName(n); err != nil {
			return fmt.Errorf("fd %d: %w", FirstFD+i, err)
		}
	}
	return nil
}
