package supervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/workertable"
	"golang.org/x/sys/unix"
)

type harness struct {
	t    *testing.T
	s    *Supervisor
	dir  string
	sock string
	done chan error
}

// start runs a Supervisor of the test app with n workers on a unix socket.
func start(t *testing.T, n int, env []string, mod func(*Config)) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "zds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	f, err := ln.(*net.UnixListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name: "test", StateDir: dir, Command: []string{self},
		Env:       append(append(os.Environ(), testAppEnv+"=1"), env...),
		Listeners: []Listener{{Name: "http", Addr: "unix://" + sock, File: f}},
		Workers:   n, ReadyTimeout: 10 * time.Second, Grace: 5 * time.Second,
		UID: -1, GID: -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	h := &harness{t: t, s: s, dir: dir, sock: sock, done: make(chan error, 1)}
	go func() { h.done <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Stop(false)
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not stop within 30s")
		}
		f.Close()
	})
	return h
}

func (h *harness) waitFor(what string, ok func(runapi.Status) bool) runapi.Status {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := h.s.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s not seen within 30s; status %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) healthy() runapi.Status {
	h.t.Helper()
	return h.waitFor("healthy", func(st runapi.Status) bool { return st.Health == runapi.HealthHealthy })
}

func (h *harness) get() (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", h.sock)
		}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://zd/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestStartServeStop(t *testing.T) {
	h := start(t, 2, nil, nil)
	st := h.healthy()
	if len(st.Workers) != 2 || st.Generation != 1 {
		t.Fatalf("status: %d workers, generation %d; want 2, 1", len(st.Workers), st.Generation)
	}
	for _, w := range st.Workers {
		if w.Status != "test app serving" {
			t.Errorf("worker %d STATUS = %q; want the app's STATUS= line", w.Slot, w.Status)
		}
	}
	body, err := h.get()
	if err != nil || !strings.Contains(body, "gen=1") {
		t.Fatalf("GET = %q, %v; want an answer from generation 1", body, err)
	}
	h.s.flushTable() // the table is written asynchronously
	tab, err := workertable.Load(filepath.Join(h.dir, "workers.msgpack"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Ready()) != 2 || tab.SupervisorPID != os.Getpid() {
		t.Errorf("worker table: %d ready, supervisor pid %d; want 2, %d", len(tab.Ready()), tab.SupervisorPID, os.Getpid())
	}
	h.s.Stop(false)
	if err := <-h.done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	h.done <- nil
	for _, w := range st.Workers {
		if _, err := os.Stat("/proc/" + itoa(w.PID)); err == nil {
			t.Errorf("worker pid %d still exists after Stop", w.PID)
		}
	}
}

func TestReloadStrategies(t *testing.T) {
	h := start(t, 2, nil, func(c *Config) { c.MaxSurge = 2 })
	h.healthy()
	for i, strategy := range []string{runapi.StrategyRolling, runapi.StrategyBlueGreen} {
		res, err := h.s.Reload(context.Background(), runapi.ReloadArgs{Strategy: strategy})
		if err != nil || !res.ReloadSuccessful || res.Generation != i+2 {
			t.Fatalf("Reload(%s) = %+v, %v; want generation %d", strategy, res, err, i+2)
		}
		st := h.s.Status()
		for _, w := range st.Workers {
			if w.Generation != i+2 {
				t.Errorf("after %s: worker %d of generation %d", strategy, w.Slot, w.Generation)
			}
		}
	}
}

func TestReloadAbortKeepsOld(t *testing.T) {
	badFile := filepath.Join(t.TempDir(), "bad")
	// Good workers must be ready within it on a busy machine too.
	h := start(t, 2, []string{"ZD_TEST_BAD_FILE=" + badFile}, func(c *Config) { c.ReadyTimeout = 8 * time.Second })
	h.healthy()
	for _, bad := range []string{"crash", "never"} {
		if err := os.WriteFile(badFile, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, strategy := range []string{runapi.StrategyRolling, runapi.StrategyBlueGreen} {
			_, err := h.s.Reload(context.Background(), runapi.ReloadArgs{Strategy: strategy})
			var ce *control.Error
			if !errors.As(err, &ce) || ce.Code != control.CodeAborted {
				t.Fatalf("Reload(%s) of a release that does %q = %v; want an aborted error", strategy, bad, err)
			}
			st := h.healthy()
			if st.Generation != 1 || len(st.Workers) != 2 {
				t.Fatalf("after the abort: generation %d, %d workers; want 1, 2", st.Generation, len(st.Workers))
			}
		}
	}
	if body, err := h.get(); err != nil || !strings.Contains(body, "gen=1") {
		t.Errorf("GET after aborts = %q, %v; want generation 1", body, err)
	}
}

func TestReloadRefusedWhileBusy(t *testing.T) {
	h := start(t, 1, nil, nil)
	h.healthy()
	if _, err := h.s.lockReload("test"); err != nil {
		t.Fatal(err)
	}
	_, err := h.s.Reload(context.Background(), runapi.ReloadArgs{})
	if !errors.Is(err, &control.Error{Code: control.CodeBusy}) || !strings.Contains(err.Error(), "reload already in progress") {
		t.Errorf("Reload during a reload = %v; want busy, reload already in progress", err)
	}
	h.s.unlockReload()
	h.s.Stop(false)
	_, err = h.s.Reload(context.Background(), runapi.ReloadArgs{})
	if !errors.Is(err, &control.Error{Code: control.CodeUnavailable}) {
		t.Errorf("Reload during a stop = %v; want unavailable", err)
	}
}

func TestRespawnLimit(t *testing.T) {
	h := start(t, 1, nil, func(c *Config) { c.RespawnLimit = 2 })
	st := h.healthy()
	for i := range 3 {
		pid := st.Workers[0].PID
		if err := syscallKill(pid); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			break
		}
		st = h.waitFor("respawned", func(s runapi.Status) bool {
			return s.Health == runapi.HealthHealthy && len(s.Workers) == 1 && s.Workers[0].PID != pid
		})
	}
	st = h.waitFor("degraded", func(s runapi.Status) bool { return s.Health == runapi.HealthDegraded && len(s.Workers) == 0 })
	if !strings.Contains(string(st.HealthReason), "respawn limit") {
		t.Errorf("health reason %q; want the respawn limit", st.HealthReason)
	}
}

func TestPreStopHook(t *testing.T) {
	var out string
	h := start(t, 1, nil, func(c *Config) {
		out = filepath.Join(c.StateDir, "prestop")
		c.PreStop = "echo $ZD_SLOT $ZD_PID $ZD_GENERATION >> " + out
	})
	st := h.healthy()
	if _, err := h.s.Reload(context.Background(), runapi.ReloadArgs{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	want := "0 " + itoa(st.Workers[0].PID) + " 1\n"
	if err != nil || string(b) != want {
		t.Errorf("pre-stop wrote %q, %v; want %q", b, err, want)
	}
}

// A worker of the new generation that crashes after it took over its slot,
// while the rolling reload is still going: the reload aborts and every slot
// gets the old release back.
func TestRollingAbortRestoresOld(t *testing.T) {
	h := start(t, 3, []string{"ZD_TEST_CRASH_AFTER_READY=2/0", "ZD_TEST_SLOW=2/2"}, nil)
	h.healthy()
	_, err := h.s.Reload(context.Background(), runapi.ReloadArgs{Strategy: runapi.StrategyRolling})
	if !errors.Is(err, &control.Error{Code: control.CodeAborted}) || !strings.Contains(err.Error(), "exited during the reload") {
		t.Fatalf("Reload = %v; want aborted, worker 0 exited during the reload", err)
	}
	st := h.healthy()
	if st.Generation != 1 || len(st.Workers) != 3 {
		t.Fatalf("after the abort: generation %d, %d workers; want 1, 3", st.Generation, len(st.Workers))
	}
	for _, w := range st.Workers {
		if w.Generation != 1 {
			t.Errorf("slot %d runs generation %d; want the old generation 1", w.Slot, w.Generation)
		}
	}
}

// EXTEND_TIMEOUT_USEC from a starting worker moves its readiness bound.
func TestExtendTimeout(t *testing.T) {
	// 5s: long enough for a worker to start and ask on a busy machine,
	// shorter than the 6s the asking worker then takes.
	h := start(t, 1, []string{"ZD_TEST_EXTEND=2"}, func(c *Config) { c.ReadyTimeout = 5 * time.Second })
	h.healthy()
	res, err := h.s.Reload(context.Background(), runapi.ReloadArgs{})
	if err != nil || !res.ReloadSuccessful {
		t.Fatalf("Reload with a worker that asked for more time = %+v, %v; want success", res, err)
	}
}

// TestListenerStaysNonBlocking: starting workers (and a reload) must not
// switch the shared listening socket to blocking mode, which (*os.File).Fd
// does for every process sharing it. The workers here are sleep(1), which
// never touches the socket (a Go app would set O_NONBLOCK again itself).
func TestListenerStaysNonBlocking(t *testing.T) {
	h := start(t, 1, nil, func(c *Config) {
		c.Command = []string{"sleep", "60"}
		c.Ready = ReadySpec{Kind: "delay", Wait: time.Millisecond}
	})
	f := h.s.cfg.Listeners[0].File
	nonBlocking := func() bool {
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fl int
		var ferr error
		if err := rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }); err != nil || ferr != nil {
			t.Fatal(err, ferr)
		}
		return fl&unix.O_NONBLOCK != 0
	}
	if !nonBlocking() {
		t.Fatal("the test listener is blocking before zd-run used it")
	}
	h.healthy()
	if _, err := h.s.Reload(context.Background(), runapi.ReloadArgs{}); err != nil {
		t.Fatal(err)
	}
	if !nonBlocking() {
		t.Error("the listener became blocking after workers were started")
	}
}

// TestStatusDuringReload: status never waits for a running reload. The new
// worker never gets ready (the reload waits out its bound), yet Status and
// run.sock's status answer meanwhile and say a reload is in progress; were
// they queued behind the reload they would only see it finished.
func TestStatusDuringReload(t *testing.T) {
	badFile := filepath.Join(t.TempDir(), "bad")
	h := start(t, 1, []string{"ZD_TEST_BAD_FILE=" + badFile}, func(c *Config) { c.ReadyTimeout = 20 * time.Second })
	h.healthy()
	if err := os.WriteFile(badFile, []byte("never"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.s.Reload(ctx, runapi.ReloadArgs{})
		done <- err
	}()
	h.waitFor("reload in progress", func(st runapi.Status) bool { return st.ReloadInProgress })
	srv, err := control.Listen(filepath.Join(h.dir, "run.sock"), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	go func() { _ = srv.Serve(sctx, h.s.Handler(nil)) }()
	defer func() { scancel(); srv.Close() }()
	var st runapi.Status
	if err := control.Call(context.Background(), filepath.Join(h.dir, "run.sock"), runapi.OpStatus, nil, &st); err != nil {
		t.Fatal(err)
	}
	if !st.ReloadInProgress || st.Health != runapi.HealthReloading {
		t.Errorf("status over run.sock during the reload: in progress %v, health %s; want true, reloading", st.ReloadInProgress, st.Health)
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("the cancelled reload of a never-ready release succeeded")
	}
}
