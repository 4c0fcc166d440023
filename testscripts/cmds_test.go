package testscripts

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

// cmdSignal sends a signal to processes: signal SIG TARGET...
// TARGET is a pid, a file holding a pid (a pid file), or cmd:NAME for every
// background command whose program is NAME. SIG is a name like HUP or USR2.
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! signal")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: signal SIG pid|pidfile|cmd:NAME...")
	}
	sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(args[0]), "SIG"))
	if sig == 0 {
		ts.Fatalf("unknown signal %q", args[0])
	}
	for _, target := range args[1:] {
		for _, pid := range resolvePids(ts, target) {
			ts.Check(unix.Kill(pid, sig))
		}
	}
}

func resolvePids(ts *testscript.TestScript, target string) []int {
	if name, ok := strings.CutPrefix(target, "cmd:"); ok {
		var pids []int
		for _, c := range ts.BackgroundCmds() {
			// Not c.ProcessState: testscript's own goroutine writes it in Wait
			// (a data race under -race). A process that is gone fails kill 0.
			if c.Process != nil && filepath.Base(c.Path) == name && unix.Kill(c.Process.Pid, 0) == nil {
				pids = append(pids, c.Process.Pid)
			}
		}
		if len(pids) == 0 {
			ts.Fatalf("no running background command %q", name)
		}
		return pids
	}
	if pid, err := strconv.Atoi(target); err == nil {
		return []int{pid}
	}
	b, err := os.ReadFile(ts.MkAbs(target))
	ts.Check(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		ts.Fatalf("pid file %s: %v", target, err)
	}
	return []int{pid}
}

// cmdWaitFor waits until something is reachable: waitfor [-timeout D] WHAT...
// WHAT is tcp:HOST:PORT, unix:PATH (a stream socket that accepts),
// file:PATH (exists), or http:URL (answers 2xx). With !, waits until it is
// not reachable any more.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("waitfor", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 15*time.Second, "")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		ts.Fatalf("usage: waitfor [-timeout D] tcp:ADDR|unix:PATH|file:PATH|http:URL...")
	}
	for _, what := range fs.Args() {
		deadline := time.Now().Add(*timeout)
		for {
			err := probe(ts, what)
			if (err == nil) != neg {
				break
			}
			if time.Now().After(deadline) {
				if neg {
					ts.Fatalf("%s still reachable after %v", what, *timeout)
				}
				ts.Fatalf("%s not reachable after %v: %v", what, *timeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func probe(ts *testscript.TestScript, what string) error {
	kind, rest, ok := strings.Cut(what, ":")
	if !ok {
		ts.Fatalf("waitfor: %q has no kind: prefix", what)
	}
	switch kind {
	case "tcp", "unix":
		addr := rest
		if kind == "unix" {
			addr = ts.MkAbs(rest)
		}
		c, err := net.DialTimeout(kind, addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	case "file":
		_, err := os.Stat(ts.MkAbs(rest))
		return err
	case "http":
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", "http:"+rest, nil)
		if err != nil {
			ts.Fatalf("waitfor: %v", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	ts.Fatalf("waitfor: unknown kind %q", kind)
	return nil
}
