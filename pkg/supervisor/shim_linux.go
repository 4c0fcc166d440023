package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ShimEnv is the hidden environment variable that turns a zd-run process into
// the worker exec shim: zd-run starts /proc/self/exe with it, and the shim
// applies what can only be done inside the child (LISTEN_PID = its own pid,
// credentials, rlimits, cgroup, the death signal re-armed after setuid) and
// then execs the app in place, so the app's pid is the shim's pid.
const ShimEnv = "ZD_RUN_SHIM_SPEC"

// shimSpec is what the supervisor tells the shim, as JSON in ShimEnv.
type shimSpec struct {
	Path   string   `json:"path"`
	Argv   []string `json:"argv"`
	NFDs   int      `json:"nfds"`
	Names  []string `json:"names"`
	PPID   int      `json:"ppid"`
	UID    int      `json:"uid"` // -1: keep
	GID    int      `json:"gid"` // -1: keep
	NoFile uint64   `json:"nofile,omitempty"`
	Cgroup string   `json:"cgroup,omitempty"` // directory whose cgroup.procs we join
	// Watchdog: WATCHDOG_USEC is in the environment; add WATCHDOG_PID (our pid).
	Watchdog bool `json:"watchdog,omitempty"`
}

// RunShim runs the worker exec shim when ShimEnv is set and never returns in
// that case except with a failure exit code; otherwise it returns false at
// once. Call it first thing in zd-run's Main.
func RunShim(getenv func(string) string, stderr io.Writer) (isShim bool, code int) {
	raw := getenv(ShimEnv)
	if raw == "" {
		return false, 0
	}
	var spec shimSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(stderr, "zd-run shim: bad %s: %v\n", ShimEnv, err)
		return true, 127
	}
	if err := shimExec(spec); err != nil {
		fmt.Fprintf(stderr, "zd-run: worker %s: %v\n", filepath.Base(spec.Path), err)
		return true, 127
	}
	return true, 0 // not reached
}

func shimExec(spec shimSpec) error {
	runtime.LockOSThread()
	if spec.Cgroup != "" {
		if err := os.WriteFile(filepath.Join(spec.Cgroup, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", spec.Cgroup, err)
		}
	}
	if spec.NoFile > 0 {
		lim := unix.Rlimit{Cur: spec.NoFile, Max: spec.NoFile}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("set RLIMIT_NOFILE to %d: %w", spec.NoFile, err)
		}
	}
	if spec.GID >= 0 {
		if err := unix.Setgroups([]int{spec.GID}); err != nil {
			return fmt.Errorf("setgroups(%d): %w", spec.GID, err)
		}
		if err := unix.Setgid(spec.GID); err != nil {
			return fmt.Errorf("setgid(%d): %w", spec.GID, err)
		}
	}
	if spec.UID >= 0 {
		if err := unix.Setuid(spec.UID); err != nil {
			return fmt.Errorf("setuid(%d): %w", spec.UID, err)
		}
	}
	// A credential change clears the death signal: arm it again, then make
	// sure the supervisor did not die before we armed it.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_PDEATHSIG: %w", err)
	}
	if os.Getppid() != spec.PPID {
		return fmt.Errorf("supervisor %d is gone", spec.PPID)
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case ShimEnv, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID":
			continue
		}
		env = append(env, kv)
	}
	if spec.Watchdog {
		env = append(env, "WATCHDOG_PID="+strconv.Itoa(os.Getpid()))
	}
	if spec.NFDs > 0 {
		env = append(env,
			"LISTEN_PID="+strconv.Itoa(os.Getpid()),
			"LISTEN_FDS="+strconv.Itoa(spec.NFDs),
			"LISTEN_FDNAMES="+strings.Join(spec.Names, ":"))
	}
	err := unix.Exec(spec.Path, spec.Argv, env)
	return fmt.Errorf("exec %s: %w", spec.Path, err)
}
