package testscripts

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// reapStrays sends SIGKILL to every process other than this one whose
// command line mentions one of dirs (as a path prefix). Scripts start
// daemons that detach (setsid, double fork), which testscript's own cleanup
// of background commands does not reach.
func reapStrays(dirs ...string) {
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if d != "" && bytes.Contains(cmdline, []byte(d+"/")) {
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

func TestReapStrays(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "while :; do sleep 0.05; done", dir+"/marker")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sh", "-c", "while :; do sleep 0.05; done", t.TempDir()+"/other")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	reapStrays(dir)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("process naming %s ended with %v; want SIGKILL", dir, err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("reapStrays(%s) left the process naming it running", dir)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("reapStrays killed a process naming another folder: %v", err)
	}
}
