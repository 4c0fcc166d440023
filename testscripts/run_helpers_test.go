package testscripts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/runapi"
	"golang.org/x/sys/unix"
)

// zdRun is a zd-run started by a Go test (the programs are in PATH: the
// testscript runner put copies of the test binary there).
type zdRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string // state dir
	sock   string // the app's shared unix socket
	stderr *bytes.Buffer
	mu     sync.Mutex
	done   chan struct{}
}

// shortDir is a temp dir with a short path (sun_path is 108 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "zdt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func startZdRun(t *testing.T, args ...string) *zdRun {
	t.Helper()
	return startZdRunWith(t, nil, nil, args...)
}

// startZdRunWith is startZdRun with env added to zd-run's environment
// (its workers inherit it) and its stderr, with its workers', copied to
// tee as well (when not nil).
func startZdRunWith(t *testing.T, env []string, tee io.Writer, args ...string) *zdRun {
	t.Helper()
	base := shortDir(t)
	r := &zdRun{t: t, dir: filepath.Join(base, "st"), sock: filepath.Join(base, "app.sock"), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	full := append([]string{"--state-dir", r.dir, "--listen", "unix://" + r.sock}, args...)
	r.cmd = exec.Command("zd-run", full...)
	r.cmd.Stderr = syncWriter{&r.mu, r.stderr}
	if tee != nil {
		r.cmd.Stderr = io.MultiWriter(syncWriter{&r.mu, r.stderr}, tee)
	}
	r.cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start zd-run: %v", err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		select {
		case <-r.done:
			return
		default:
		}
		r.cmd.Process.Signal(unix.SIGQUIT)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("zd-run stderr:\n%s", r.log())
		}
	})
	return r
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (r *zdRun) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

func (r *zdRun) status() (runapi.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st runapi.Status
	err := control.Call(ctx, filepath.Join(r.dir, "run.sock"), runapi.OpStatus, nil, &st)
	return st, err
}

// waitFor polls status until ok says yes or the bound passes.
func (r *zdRun) waitFor(what string, bound time.Duration, ok func(runapi.Status) bool) runapi.Status {
	r.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		st, err := r.status()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("zd-run: %s not seen within %v (last status %+v, err %v)", what, bound, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *zdRun) waitHealthy() runapi.Status {
	r.t.Helper()
	return r.waitFor("healthy", 30*time.Second, func(st runapi.Status) bool {
		return st.Health == runapi.HealthHealthy && !st.ReloadInProgress
	})
}

// zdctl runs zdctl against r and returns stdout, stderr and the exit code.
// startZdQueue starts zd-queue in front of r's workers (it finds their table
// in r's state dir), listening on a unix socket beside that dir, and waits
// until it serves its control socket. It is stopped (TERM, then KILL after
// 15 s) when the test ends, and its log is shown if the test failed.
// startZdQueue returns the client socket's path; extra are more flags.
func (r *zdRun) startZdQueue(extra ...string) string { return r.startZdQueueWith(nil, nil, extra...) }

// startZdQueueWith is startZdQueue with env added to zd-queue's
// environment and its stderr copied to tee as well (when not nil).
func (r *zdRun) startZdQueueWith(env []string, tee io.Writer, extra ...string) string {
	t := r.t
	qsock := filepath.Join(filepath.Dir(r.dir), "q.sock")
	q := exec.Command("zd-queue", append([]string{"--state-dir", r.dir, "--listen", "unix://" + qsock}, extra...)...)
	var qlog syncBuf
	q.Stderr = &qlog
	if env != nil {
		q.Env = append(os.Environ(), env...)
	}
	if tee != nil {
		q.Stderr = io.MultiWriter(&qlog, tee)
	}
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qdone := make(chan struct{})
	go func() { q.Wait(); close(qdone) }()
	t.Cleanup(func() {
		q.Process.Signal(unix.SIGTERM)
		select {
		case <-qdone:
		case <-time.After(15 * time.Second):
			q.Process.Kill()
			<-qdone
		}
		if t.Failed() {
			t.Logf("zd-queue stderr:\n%s", qlog.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(r.dir, "queue.sock")); err == nil {
			return qsock
		}
		if time.Now().After(deadline) {
			t.Fatal("zd-queue did not create queue.sock within 20s")
		}
	}
}

// queueReloads are the reloads the zd-queue tests put traffic and sessions
// through: both strategies, and blue-green with the old generation stopped
// before the new one starts (--exclusive: a while with no backend).
var queueReloads = [][]string{{"--strategy", "rolling"}, {"--strategy", "blue-green"}, {"--strategy", "rolling"},
	{"--strategy", "blue-green", "--exclusive"}, {"--strategy", "blue-green"}}

// reload runs zdctl reload with args; a failed reload ends the test. It
// returns zdctl's stderr (its step lines).
func (r *zdRun) reload(args ...string) string {
	r.t.Helper()
	_, stderr, code := r.zdctl(append([]string{"reload"}, args...)...)
	if code != 0 {
		r.t.Fatalf("zdctl reload %v: exit %d: %s", args, code, stderr)
	}
	return stderr
}

func (r *zdRun) zdctl(args ...string) (string, string, int) {
	r.t.Helper()
	cmd := exec.Command("zdctl", append([]string{"--state-dir", r.dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("zdctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// load sends keep-alive HTTP requests to the app's unix socket from n
// clients until stop is called, counting successes and failures. It is
// bounded: it ends by itself after loadMaxTime or loadMaxRequests, so a
// test that forgets stop (or hangs before it) cannot load the machine for
// ever.
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

const (
	loadMaxTime     = 10 * time.Minute
	loadMaxRequests = 5_000_000
)

func startLoad(sock string, n int) *load { return startLoadEvery(sock, n, 0) }

// startLoadEvery is startLoad with each client sending at most one request
// every interval (0: as fast as it is answered), so the load has a rate
// and leaves the proxy room: what a measurement of stalls needs.
func startLoadEvery(sock string, n int, every time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), loadMaxTime)
	l := &load{cancel: cancel}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: n,
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var tick <-chan time.Time
			if every > 0 {
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-ctx.Done():
						return
					case <-tick:
					}
				}
				resp, err := client.Get("http://zd/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
					continue
				}
				if l.ok.Add(1)+l.failed.Load() >= loadMaxRequests {
					return
				}
			}
		}()
	}
	return l
}

func (l *load) stop(t *testing.T) (ok, failed int64) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	if e, _ := l.lastErr.Load().(string); e != "" {
		t.Logf("last request error: %s", e)
	}
	return l.ok.Load(), l.failed.Load()
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
