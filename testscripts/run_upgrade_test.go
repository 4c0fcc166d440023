package testscripts

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
	"golang.org/x/sys/unix"
)

// Self-upgrade under load, alternating zdctl (handoff) and USR2: same pid,
// the same worker processes, 0 failed requests.
func TestRunSelfUpgradeUnderLoad(t *testing.T) {
	r := startZdRun(t, "--workers", "2", "--", "zd-echo", "-idle-wait", "100ms")
	st0 := r.waitHealthy()
	pids := map[int]bool{}
	for _, w := range st0.Workers {
		pids[w.PID] = true
	}
	l := startLoad(r.sock, 4)
	const n = 6
	for i := 1; i <= n; i++ {
		if i%2 == 1 {
			if _, stderr, code := r.zdctl("reload", "--strategy", "handoff"); code != 0 {
				t.Fatalf("upgrade %d: exit %d: %s", i, code, stderr)
			}
		} else if err := r.cmd.Process.Signal(unix.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		st := r.waitFor("upgrade done", 30*time.Second, func(st runapi.Status) bool { return st.Upgrades >= i && !st.ReloadInProgress })
		if st.PID != st0.PID {
			t.Fatalf("upgrade %d: zd-run pid %d; want %d", i, st.PID, st0.PID)
		}
		for _, w := range st.Workers {
			if !pids[w.PID] {
				t.Fatalf("upgrade %d: worker %d has pid %d, not one of the original %v", i, w.Slot, w.PID, pids)
			}
		}
	}
	ok, failed := l.stop(t)
	if failed != 0 {
		t.Errorf("%d upgrades under load: %d ok, %d failed; want 0 failed", n, ok, failed)
	}
	// Workers started after the upgrades still die with zd-run (they are
	// children of the thread that survives execve).
	if _, stderr, code := r.zdctl("reload"); code != 0 {
		t.Fatalf("reload after upgrades: exit %d: %s", code, stderr)
	}
	st := r.waitHealthy()
	r.cmd.Process.Signal(unix.SIGKILL)
	<-r.done
	// PDEATHSIG is immediate; the bound is for a busy machine (without it
	// they would live on for ever).
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range st.Workers {
		for alive(w.PID) {
			if time.Now().After(deadline) {
				t.Fatalf("worker pid %d outlived zd-run by more than 10s", w.PID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A worker past --max-memory is replaced by the rolling path, without a
// failed request.
func TestRunMaxMemoryReplaces(t *testing.T) {
	r := startZdRun(t, "--workers", "2", "--max-memory", "40MB", "--", "zd-echo", "-leak-mb", "16", "-idle-wait", "100ms")
	st0 := r.waitHealthy()
	l := startLoad(r.sock, 2)
	r.waitFor("a worker replaced for memory", 30*time.Second, func(st runapi.Status) bool {
		for _, w := range st.Workers {
			if w.Restarts > 0 && w.State == "ready" {
				return true
			}
		}
		return false
	})
	ok, failed := l.stop(t)
	if failed != 0 {
		t.Errorf("memory replacement under load: %d ok, %d failed; want 0 failed", ok, failed)
	}
	if !strings.Contains(r.log(), "past --max-memory") {
		t.Errorf("zd-run did not log the memory replacement")
	}
	_ = st0
}

// Under systemd: zd-run takes its listener from LISTEN_FDS (here from
// systemd-socket-activate, matched by name) and reports READY=1,
// RELOADING=1 with MONOTONIC_USEC, and STOPPING=1 on its NOTIFY_SOCKET.
func TestRunUnderSystemd(t *testing.T) {
	ssa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("needs systemd-socket-activate")
	}
	dir := shortDir(t)
	notify, err := sdnotify.Listen(filepath.Join(dir, "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	sock := filepath.Join(dir, "app.sock")
	self, _ := exec.LookPath("zd-run")
	cmd := exec.Command(ssa, "-l", sock, "--fdname=web", "-E", "NOTIFY_SOCKET="+filepath.Join(dir, "n.sock"),
		"-E", "PATH="+os.Getenv("PATH"),
		self, "--state-dir", filepath.Join(dir, "st"), "--listen", "web=tcp://127.0.0.1:1", "--", "zd-echo")
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(unix.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	}()
	// systemd-socket-activate execs the service at the first connection:
	// this one waits in the shared accept queue and is served by a worker.
	// Retry until systemd-socket-activate listens (it binds, then listens).
	recv := func(want string) sdnotify.Message {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			m, err := notify.Receive(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if _, ok := m.Get(want); ok {
				return m
			}
		}
	}
	first := make(chan error, 1)
	go func() {
		var err error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var c net.Conn
			if c, err = net.Dial("unix", sock); err != nil {
				continue
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: zd\r\nConnection: close\r\n\r\n"))
			if err == nil {
				var b []byte
				b, err = io.ReadAll(c)
				if err == nil && !strings.HasPrefix(string(b), "HTTP/1.1 200") {
					err = fmt.Errorf("answer %q", b)
				}
			}
			c.Close()
			break
		}
		first <- err
	}()
	recv(sdnotify.KeyReady)
	if err := <-first; err != nil {
		t.Errorf("first request (that started the service): %v", err)
	}
	r := &zdRun{t: t, dir: filepath.Join(dir, "st"), sock: sock}
	st := r.waitHealthy()
	if len(st.Listeners) != 1 || !strings.HasPrefix(st.Listeners[0], "web=unix://") {
		t.Errorf("listeners = %v; want the inherited web=unix://... socket, not tcp://127.0.0.1:1", st.Listeners)
	}
	l := startLoad(sock, 1)
	if _, stderr, code := r.zdctl("reload"); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, stderr)
	}
	m := recv(sdnotify.KeyReloading)
	if v, ok := m.Get(sdnotify.KeyMonotonicUsec); !ok || v == "" {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m.Raw)
	}
	recv(sdnotify.KeyReady)
	if ok, failed := l.stop(t); failed != 0 || ok == 0 {
		t.Errorf("requests through the inherited socket: %d ok, %d failed", ok, failed)
	}
	cmd.Process.Signal(unix.SIGTERM)
	recv(sdnotify.KeyStopping)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("zd-run exit after TERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("zd-run did not exit after TERM")
	}
	done <- nil
}
