package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// runHook runs cmd with /bin/sh for worker w (a --pre-stop command or an
// exec: readiness probe) and waits for it, at most timeout. It is started by
// procs like every other child, so the reaper sees its exit.
func (s *Supervisor) runHook(ctx context.Context, cmd string, w *worker, timeout time.Duration) error {
	s.mu.Lock()
	env := append([]string(nil), s.cfg.Env...)
	env = append(env,
		"ZD_SLOT="+strconv.Itoa(w.slot),
		"ZD_PID="+strconv.Itoa(w.pid),
		"ZD_GENERATION="+strconv.Itoa(w.gen),
		"ZD_BACKEND="+w.backend,
		"ZD_STATE_DIR="+s.cfg.StateDir,
		"ZD_RELEASE="+w.release,
	)
	s.mu.Unlock()
	null, err := rawFD(s.devNull)
	if err != nil {
		return fmt.Errorf("run %q: %w", cmd, err)
	}
	pid, exitC, err := s.procs.start(ctx, "/bin/sh", []string{"/bin/sh", "-c", cmd}, env, []uintptr{null, 2, 2})
	if err != nil {
		return fmt.Errorf("run %q: %w", cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ws := <-exitC:
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		return fmt.Errorf("%q: %s", cmd, describeExit(ws))
	case <-t.C:
	case <-ctx.Done():
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	select {
	case <-exitC:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%q: still running after %v, killed", cmd, timeout)
}
