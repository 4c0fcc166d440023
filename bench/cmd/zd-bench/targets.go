package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is one way of running the echo app and reloading it.
type target struct {
	name string
	note string // how a reload is done, for the report
	// start runs the app on 127.0.0.1:port and returns once it serves.
	start func(ctx context.Context, e *env, port int) (running, error)
}

// running is a started target.
type running interface {
	reload(ctx context.Context) error
	stop()
	supervisorPID() int // pid whose peak RSS is reported; 0 if none
}

// env is what every target needs: where the binaries are, a scratch
// directory, and where process output goes.
type env struct {
	bin  string
	dir  string
	logw io.Writer
	// zdRunBuilt says whether zd-run is more than a stub yet.
	zdRunBuilt bool
}

func (e *env) path(name string) string { return filepath.Join(e.bin, name) }

func url(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) + "/" }

// appGrace is the echo app's drain bound; idle keep-alive connections are
// closed after -idle-wait.
const appGrace = "10s"

func targets() []target {
	return []target{
		{name: "naive restart", note: "SIGTERM the app, wait for it to exit, start it again", start: startNaive},
		{name: "tableflip", note: "SIGHUP: tableflip starts a new copy with the listener; the old one runs http.Server.Shutdown once it is ready", start: startTableflip},
		{name: "zd-run rolling", note: "zdctl reload --strategy rolling (4 workers)", start: zdRun("rolling")},
		{name: "zd-run blue-green", note: "zdctl reload --strategy blue-green (4 workers)", start: zdRun("blue-green")},
		{name: "zd-run handoff", note: "zdctl reload --strategy handoff: zd-run re-execs itself in place (4 workers untouched)", start: zdRun("handoff")},
	}
}

// naive: one echo process on its own socket; a reload closes the port.
type naive struct {
	e    *env
	port int
	p    *proc
}

func startNaive(ctx context.Context, e *env, port int) (running, error) {
	n := &naive{e: e, port: port}
	if err := n.launch(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *naive) launch(ctx context.Context) error {
	p, err := startProc(n.e.logw, nil, n.e.path("echo"), "-listen", "127.0.0.1:"+strconv.Itoa(n.port), "-grace", appGrace)
	if err != nil {
		return err
	}
	n.p = p
	return waitHTTP(ctx, url(n.port), 20*time.Second)
}

func (n *naive) reload(ctx context.Context) error {
	n.p.signal(syscall.SIGTERM)
	if !n.p.wait(30 * time.Second) {
		n.p.stop(0)
		return fmt.Errorf("echo pid %d did not exit within 30s of SIGTERM", n.p.pid())
	}
	return n.launch(ctx)
}

func (n *naive) stop()              { n.p.stop(15 * time.Second) }
func (n *naive) supervisorPID() int { return 0 }

// tableflip: bench/tableflip-echo, upgraded with SIGHUP.
type tableflip struct {
	p       *proc
	pidFile string
}

func startTableflip(ctx context.Context, e *env, port int) (running, error) {
	pidFile := filepath.Join(e.dir, "tableflip-"+strconv.Itoa(port)+".pid")
	p, err := startProc(e.logw, nil, e.path("tableflip-echo"), "-listen", "127.0.0.1:"+strconv.Itoa(port), "-pidfile", pidFile, "-grace", appGrace)
	if err != nil {
		return nil, err
	}
	t := &tableflip{p: p, pidFile: pidFile}
	if err := waitHTTP(ctx, url(port), 20*time.Second); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}

// reload sends SIGHUP to the serving process and returns once its
// successor wrote the pid file (ready) and the old process is gone.
func (t *tableflip) reload(ctx context.Context) error {
	old := readPIDFile(t.pidFile)
	if old == 0 {
		return fmt.Errorf("no pid in %s", t.pidFile)
	}
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal tableflip pid %d: %w", old, err)
	}
	if err := waitFor(ctx, 30*time.Second, "tableflip successor ready", func() bool {
		p := readPIDFile(t.pidFile)
		return p != 0 && p != old
	}); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, "old tableflip process gone", func() bool { return !alive(old) })
}

func (t *tableflip) stop() {
	if pid := readPIDFile(t.pidFile); pid != 0 && pid != t.p.pid() {
		syscall.Kill(pid, syscall.SIGTERM)
		waitFor(context.Background(), 15*time.Second, "tableflip exit", func() bool { return !alive(pid) })
	}
	t.p.stop(15 * time.Second)
}

func (t *tableflip) supervisorPID() int { return 0 }

// zdrun: the echo app under zd-run with 4 workers, reloaded by zdctl.
type zdrun struct {
	e        *env
	p        *proc
	stateDir string
	strategy string
	// results of each `zdctl reload --json`, for the overhead estimate.
	results []reloadResult
}

// reloadResult is what the bench measured of one successful reload.
type reloadResult struct {
	wall time.Duration // zdctl reload, start to exit
	app  time.Duration // the app's own start-to-ready and drain time within it
	// inside is zd-run's first to last step of the reload (0 if unknown).
	inside time.Duration
}

func zdRun(strategy string) func(ctx context.Context, e *env, port int) (running, error) {
	return func(ctx context.Context, e *env, port int) (running, error) {
		if !e.zdRunBuilt {
			return nil, errNotBuilt
		}
		stateDir := filepath.Join(e.dir, "zd-"+strconv.Itoa(port))
		p, err := startProc(e.logw, nil, e.path("zd-run"),
			"--listen", "tcp://127.0.0.1:"+strconv.Itoa(port), "--workers", "4", "--grace", appGrace,
			"--state-dir", stateDir, "--", e.path("echo"), "-grace", appGrace)
		if err != nil {
			return nil, err
		}
		z := &zdrun{e: e, p: p, stateDir: stateDir, strategy: strategy}
		if err := waitHTTP(ctx, url(port), 30*time.Second); err != nil {
			z.stop()
			return nil, err
		}
		return z, nil
	}
}

// reload runs `zdctl reload --strategy S` and times it. Without --json,
// zdctl prints one line per step on stderr (not a terminal), which gives the
// app's own share of the time (see appBusy).
func (z *zdrun) reload(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, z.e.path("zdctl"), "--state-dir", z.stateDir, "reload", "--strategy", z.strategy)
	var out, events bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, z.e.logw), io.MultiWriter(&events, z.e.logw)
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	if err != nil {
		return fmt.Errorf("zdctl reload --strategy %s: %w (%s)", z.strategy, err, lastLine(events.String()))
	}
	busy, inside := eventSpans(events.String())
	z.results = append(z.results, reloadResult{wall: wall, app: busy, inside: inside})
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (z *zdrun) stop() {
	z.p.stop(20 * time.Second)
	os.RemoveAll(z.stateDir)
}

func (z *zdrun) supervisorPID() int { return z.p.pid() }
