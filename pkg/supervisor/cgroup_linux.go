package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// makeCgroup creates a cgroup v2 child of zd-run's own cgroup for the
// workers, with cpu.max set to percent of one CPU, and returns its
// directory. It fails with a reason when that is not possible (no cgroup v2,
// no write access to our cgroup, or the cpu controller not delegated).
func makeCgroup(name string, percent float64) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("--cpu-limit: read /proc/self/cgroup: %w", err)
	}
	var rel string
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if p, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			rel = string(p)
		}
	}
	if rel == "" {
		return "", fmt.Errorf("--cpu-limit needs cgroup v2 (unified hierarchy); this system has none")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		return "", fmt.Errorf("--cpu-limit needs cgroup v2 mounted as the unified hierarchy at /sys/fs/cgroup; this system mounts cgroup v1 (or a hybrid) there, so the cpu controller is not available to cgroup v2 (use systemd's CPUQuota= or the container's CPU limit instead)")
	}
	parent := filepath.Join("/sys/fs/cgroup", rel)
	if ctl, err := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control")); err != nil || !bytes.Contains(ctl, []byte("cpu")) {
		// Try to enable the controller for our children.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
			return "", fmt.Errorf("--cpu-limit: cannot enable the cpu controller in %s (run zd-run with a delegated cgroup, e.g. systemd Delegate=yes, or use the unit's CPUQuota=): %w", parent, err)
		}
	}
	dir := filepath.Join(parent, "zd-workers-"+name+"-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("--cpu-limit: cannot create cgroup %s (run zd-run with a delegated cgroup, e.g. systemd Delegate=yes): %w", dir, err)
	}
	period := 100000
	quota := int(percent / 100 * float64(period))
	if err := os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(fmt.Sprintf("%d %d", quota, period)), 0); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("--cpu-limit: write %s/cpu.max: %w", dir, err)
	}
	return dir, nil
}
