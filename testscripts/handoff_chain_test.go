package testscripts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHandoffChain is the acceptance test of zd-handoff: one listening TCP
// socket is handed through a chain of successive generations, each
// "zd-handoff take --release -- zd-handoff serve -- testapp", while a
// client connects in a tight loop and another runs "zd-handoff ls" in a
// loop. Every connection must be answered: none refused, none reset, none
// left without an answer; and every ls must be answered (the handoff path
// never lacks a live server), by the new generation as soon as the old one
// has exited.
func TestHandoffChain(t *testing.T) {
	gens := 50
	if testing.Short() {
		gens = 10
	}
	zdh, err := exec.LookPath("zd-handoff")
	if err != nil {
		t.Fatalf("zd-handoff is not on PATH (testscript.Main puts it there): %v", err)
	}
	dir, err := os.MkdirTemp("", "zdc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "h.sock")
	logs := t.TempDir()
	// Under -race every process sleeps a second at exit (atexit_sleep_ms)
	// waiting for late race reports; a chain has hundreds of exits.
	env := append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))

	var all []*exec.Cmd
	start := func(gen int, args ...string) *exec.Cmd {
		t.Helper()
		logf, err := os.Create(filepath.Join(logs, fmt.Sprintf("gen%02d.log", gen)))
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(zdh, args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start generation %d: %v", gen, err)
		}
		all = append(all, cmd)
		return cmd
	}
	defer func() {
		for _, c := range all {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		}
		if t.Failed() {
			dumpLogs(t, logs)
		}
	}()

	// --notify: each app is ready when it sends READY=1 (testapp does).
	serve := []string{"zd-handoff", "serve", "--socket", sock, "--grace", "20s", "--notify", "--", "testapp"}
	prev := start(0, append([]string{"listen", "web=tcp://127.0.0.1:0", "--"}, serve...)...)
	addr := waitServing(t, zdh, sock, prev.Process.Pid, env)

	// The client and ls loops run until the chain is done. Their bounds
	// are for a hang and outlast the chain's own (per generation: 60 s to
	// exit, 30 s for the app's pid, 30 s for its answer), so a slow machine
	// fails the chain's bound first and the loops never stop under it.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	counts := &clientCounts{pids: map[string]bool{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		hammer(ctx, addr, (gens+1)*100_000, time.Duration(gens+1)*3*time.Minute, counts)
	}()
	lsc := &lsCounts{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		lsLoop(ctx, zdh, sock, env, (gens+1)*10_000, time.Duration(gens+1)*3*time.Minute, lsc)
	}()
	// Every generation's app must answer before the next takes over, so
	// that the socket really went through each of them.
	appAnswered := func(gen int) {
		t.Helper()
		pid := appPID(t, filepath.Join(logs, fmt.Sprintf("gen%02d.log", gen)))
		waitFor(t, 30*time.Second, fmt.Sprintf("an answer from generation %d's app (pid %d)", gen, pid),
			func() bool { return counts.served(pid) })
	}
	appAnswered(0)

	for g := 1; g <= gens; g++ {
		next := start(g, append([]string{"take", "--socket", sock, "--release", "--"}, serve...)...)
		if err := waitExit(prev, 60*time.Second); err != nil {
			stop()
			wg.Wait()
			t.Fatalf("generation %d (pid %d) did not exit 0 after release: %v", g-1, prev.Process.Pid, err)
		}
		// No polling: the old generation exits only once the new one
		// answers on the handoff path.
		if pid, _, err := lsOnce(zdh, sock, env); err != nil || pid != next.Process.Pid {
			stop()
			wg.Wait()
			t.Fatalf("after generation %d exited, ls on %s: pid %d, %v; want generation %d (pid %d)", g-1, sock, pid, err, g, next.Process.Pid)
		}
		appAnswered(g)
		prev = next
	}
	stop()
	wg.Wait()
	prev.Process.Signal(syscall.SIGTERM)
	if err := waitExit(prev, 60*time.Second); err != nil {
		t.Errorf("last generation did not stop cleanly on TERM: %v", err)
	}

	t.Logf("handoff chain: %d generations; %d connections: %d answered, %d refused, %d reset, %d unanswered, %d other errors; all %d app processes answered",
		gens, counts.attempts, counts.ok, counts.refused, counts.reset, counts.unanswered, counts.other, len(counts.pids))
	if counts.firstErr != nil {
		t.Logf("first error: %v", counts.firstErr)
	}
	if counts.refused != 0 || counts.reset != 0 || counts.unanswered != 0 || counts.other != 0 || counts.ok != counts.attempts {
		t.Errorf("not every connection was answered")
	}
	if counts.ok == 0 {
		t.Errorf("no connection made")
	}
	if counts.bounded {
		t.Errorf("the client stopped at its bound before the chain was done: the last generations ran without load")
	}
	t.Logf("ls during the chain: %d runs, %d failed", lsc.runs, lsc.failed)
	if lsc.failed != 0 {
		t.Errorf("ls failed during a handoff: %v", lsc.firstErr)
	}
	if lsc.runs == 0 {
		t.Errorf("no ls ran")
	}
	if lsc.bounded {
		t.Errorf("the ls loop stopped at its bound before the chain was done")
	}
}

// lsCounts is what the ls loop saw.
type lsCounts struct {
	runs, failed int
	firstErr     error
	bounded      bool // stopped by max or maxTime, not by ctx
}

// lsLoop runs "zd-handoff ls" one after another until ctx ends or the
// bounds are reached; every run must succeed.
func lsLoop(ctx context.Context, zdh, sock string, env []string, max int, maxTime time.Duration, c *lsCounts) {
	deadline := time.Now().Add(maxTime)
	defer func() { c.bounded = ctx.Err() == nil }()
	for i := 0; i < max && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		_, _, err := lsOnce(zdh, sock, env)
		c.runs++
		if err != nil {
			c.failed++
			if c.firstErr == nil {
				c.firstErr = err
			}
		}
	}
}

// lsOnce runs "zd-handoff ls --json" once and returns the server's pid
// and the first offered address.
func lsOnce(zdh, sock string, env []string) (int, string, error) {
	ls := exec.Command(zdh, "ls", "--socket", sock, "--json", "--timeout", "10s")
	ls.Env = env
	var stderr strings.Builder
	ls.Stderr = &stderr
	out, err := ls.Output()
	if err != nil {
		return 0, "", fmt.Errorf("ls: %w: %s", err, stderr.String())
	}
	var offer struct {
		PID int `json:"pid"`
		FDs []struct {
			Local string `json:"local"`
		} `json:"fds"`
	}
	if err := json.Unmarshal(out, &offer); err != nil {
		return 0, "", fmt.Errorf("ls --json output %q: %w", out, err)
	}
	if len(offer.FDs) != 1 {
		return offer.PID, "", fmt.Errorf("ls --json output %q: want one fd", out)
	}
	return offer.PID, offer.FDs[0].Local, nil
}

// clientCounts is what the client saw.
type clientCounts struct {
	mu                                              sync.Mutex
	attempts, ok, refused, reset, unanswered, other int
	pids                                            map[string]bool
	firstErr                                        error
	bounded                                         bool // stopped by maxConns or maxTime, not by ctx
}

// served reports whether the app with pid has answered a connection.
func (c *clientCounts) served(pid int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pids[fmt.Sprintf("served by %d", pid)]
}

// appPID reads the pid of the app a generation's serve started from its
// log ("msg=started cmd=... pid=N"), waiting for the line to appear.
func appPID(t *testing.T, log string) int {
	t.Helper()
	var pid int
	waitFor(t, 30*time.Second, "the app's start in "+filepath.Base(log), func() bool {
		b, _ := os.ReadFile(log)
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "msg=started") {
				continue
			}
			if i := strings.LastIndex(line, " pid="); i >= 0 {
				if _, err := fmt.Sscanf(line[i:], " pid=%d", &pid); err == nil {
					return true
				}
			}
		}
		return false
	})
	return pid
}

// hammer connects to addr one connection after another, reading the one
// line the app answers, until ctx ends or the bounds are reached.
func hammer(ctx context.Context, addr string, maxConns int, maxTime time.Duration, c *clientCounts) {
	deadline := time.Now().Add(maxTime)
	defer func() {
		c.mu.Lock()
		c.bounded = ctx.Err() == nil
		c.mu.Unlock()
	}()
	fail := func(n *int, err error) {
		*n++
		if c.firstErr == nil {
			c.firstErr = err
		}
	}
	for i := 0; i < maxConns && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		line, err := oneRequest(addr)
		c.mu.Lock()
		c.attempts++
		switch {
		case err == nil && strings.HasPrefix(line, "served by "):
			c.ok++
			c.pids[strings.TrimSpace(line)] = true
		case errors.Is(err, syscall.ECONNREFUSED):
			fail(&c.refused, err)
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			fail(&c.reset, err)
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, errNoAnswer):
			fail(&c.unanswered, fmt.Errorf("answer %q: %v", line, err))
		default:
			fail(&c.other, err)
		}
		c.mu.Unlock()
	}
}

var errNoAnswer = errors.New("connection closed without an answer")

func oneRequest(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if errors.Is(err, io.EOF) {
		return line, errNoAnswer
	}
	return line, err
}

// waitServing polls "zd-handoff ls" until the server on sock is pid (the
// first generation starting), and returns the address of the TCP socket
// it offers.
func waitServing(t *testing.T, zdh, sock string, pid int, env []string) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got, addr, err := lsOnce(zdh, sock, env)
		if err == nil && got == pid {
			return addr
		}
		last = fmt.Sprintf("pid %d, %v", got, err)
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pid %d not serving on %s after 30s (last: %s)", pid, sock, last)
	return ""
}

// waitExit waits for cmd to exit, bounded; a non-zero exit is an error.
func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running after %v (killed)", d)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dumpLogs(t *testing.T, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		t.Logf("--- %s ---\n%s", e.Name(), b)
	}
}
