package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the bench started, in its own process group so that
// stopping it also stops whatever it forked (tableflip's new generations,
// zd-run's workers).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
}

func startProc(logw io.Writer, env []string, name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process only.
func (p *proc) signal(sig syscall.Signal) error { return syscall.Kill(p.pid(), sig) }

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends TERM to the process, waits up to grace, then KILLs its whole
// process group, and waits for the process.
func (p *proc) stop(grace time.Duration) {
	syscall.Kill(p.pid(), syscall.SIGTERM)
	if !p.wait(grace) {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		p.wait(5 * time.Second)
	}
	// Anything left in the group (tableflip children, orphaned workers).
	syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200, up to timeout.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for ctx.Err() == nil {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not answering 200 after %s: %w", url, timeout, last)
}

// waitFor polls cond every 10ms until it is true or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// State is the field after the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// readPIDFile returns the pid in path, or 0.
func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// peakRSS returns VmHWM of pid in kB.
func peakRSS(pid int) (int64, error) { return statusKB(pid, "VmHWM:") }

// sampleRSS reads VmRSS of pid every 50ms until stop is closed and returns
// the largest value seen, in kB. Unlike VmHWM it survives the process
// re-executing itself.
func sampleRSS(pid int, stop <-chan struct{}) int64 {
	var peak int64
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if kb, err := statusKB(pid, "VmRSS:"); err == nil && kb > peak {
			peak = kb
		}
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}

// statusKB returns the kB value of field in /proc/PID/status.
func statusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read peak rss: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("read peak rss: no %s line", field)
}
