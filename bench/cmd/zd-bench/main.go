// Command zd-bench compares reload strategies under load in one run and
// writes bench/RESULTS.md: the echo app restarted naively (which must show
// failures, proving the harness can fail), the same app built on tableflip,
// and the app under zd-run reloaded with rolling, blue-green and handoff.
// For each target and for keep-alive and Connection: close it drives
// open-loop load at a fraction of the machine's measured maximum rate while
// reloading a fixed number of times, with package bench/load.
//
//	zd-bench -bin ./bin -reloads 20 -out bench/RESULTS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zdtools/zd/bench/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

var errNotBuilt = errors.New("not built yet")

type options struct {
	bin          string
	out          string
	jsonOut      string
	reloads      int
	interval     time.Duration
	fraction     float64
	calibrate    time.Duration
	inFlight     int
	maxRun       time.Duration
	only         string
	appLog       string
	reloadTimout time.Duration
}

// run executes the comparison. Exit codes: 0 report written, 1 a target
// could not run or the report could not be written, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("zd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.bin, "bin", "bin", "directory with echo, tableflip-echo, zd-run and zdctl")
	fs.StringVar(&o.out, "out", "bench/RESULTS.md", "markdown report to write")
	fs.StringVar(&o.jsonOut, "json", "bench/out/results.json", "JSON results to write (empty: none)")
	fs.IntVar(&o.reloads, "reloads", 20, "reloads per target and connection mode")
	fs.DurationVar(&o.interval, "interval", 500*time.Millisecond, "pause between reloads")
	fs.Float64Var(&o.fraction, "fraction", 0.5, "load at this fraction of the measured maximum rate")
	fs.DurationVar(&o.calibrate, "calibrate", 3*time.Second, "how long to measure the maximum rate")
	fs.IntVar(&o.inFlight, "inflight", 256, "most requests in flight (open loop)")
	fs.DurationVar(&o.maxRun, "max-run", 4*time.Minute, "bound on each load run")
	fs.DurationVar(&o.reloadTimout, "reload-timeout", time.Minute, "bound on each reload")
	fs.StringVar(&o.only, "only", "", "comma-separated target names to run (default all)")
	fs.StringVar(&o.appLog, "app-log", "bench/out/apps.log", "where the apps' output goes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.reloads < 1 || o.reloads > 1000 || o.fraction <= 0 || o.fraction > 2 {
		fmt.Fprintln(stderr, "zd-bench: -reloads must be 1..1000 and -fraction in (0, 2]")
		return 2
	}
	if err := bench(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "zd-bench: %v\n", err)
		return 1
	}
	return 0
}

// result is one target under one connection mode.
type result struct {
	Target       string       `json:"target"`
	Note         string       `json:"note"`
	KeepAlive    bool         `json:"keep_alive"`
	Skipped      string       `json:"skipped,omitempty"`
	Report       *load.Report `json:"report,omitempty"`
	PeakRSSkB    int64        `json:"peak_rss_kb,omitempty"`        // VmHWM of zd-run at the end
	SampledRSSkB int64        `json:"sampled_max_rss_kb,omitempty"` // largest VmRSS seen every 50ms
	Overhead     *overhead    `json:"overhead,omitempty"`
	LoadAvg      [2]string    `json:"loadavg"` // 1-minute load average before and after the run
}

func bench(ctx context.Context, o options, stdout io.Writer) error {
	for _, d := range []string{filepath.Dir(o.out), filepath.Dir(o.appLog)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	logf, err := os.Create(o.appLog)
	if err != nil {
		return fmt.Errorf("open app log: %w", err)
	}
	defer logf.Close()
	// State directories go to tmpfs when there is one, as /run is in
	// production: on a disk-backed dir each atomic rename of the worker
	// table costs milliseconds that are not zd-run's.
	dir, err := os.MkdirTemp("/dev/shm", "zdb")
	if err != nil {
		dir, err = os.MkdirTemp("", "zdb")
	}
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	e := &env{bin: o.bin, dir: dir, logw: logf, zdRunBuilt: isBuilt(filepath.Join(o.bin, "zd-run"))}
	for _, name := range []string{"echo", "tableflip-echo"} {
		if _, err := os.Stat(e.path(name)); err != nil {
			return fmt.Errorf("%s missing in %s: %w (run make tools)", name, o.bin, err)
		}
	}

	m := describeMachine()
	fmt.Fprintf(stdout, "machine: %s\n", m.summary())
	maxKA, maxClose, err := calibrate(ctx, e, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "max rate of one echo process: keep-alive %.0f/s, Connection: close %.0f/s; loading at %.0f%%\n",
		maxKA, maxClose, o.fraction*100)

	var results []result
	for _, t := range targets() {
		if o.only != "" && !contains(strings.Split(o.only, ","), t.name) {
			continue
		}
		for _, keepAlive := range []bool{true, false} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rate := maxClose * o.fraction
			if keepAlive {
				rate = maxKA * o.fraction
			}
			r := runTarget(ctx, e, o, t, keepAlive, rate)
			results = append(results, r)
			printResult(stdout, r)
		}
	}
	idle := map[string]*overhead{}
	for _, t := range targets() {
		if !strings.HasPrefix(t.name, "zd-run") || !e.zdRunBuilt || (o.only != "" && !contains(strings.Split(o.only, ","), t.name)) {
			continue
		}
		if ov := idleOverhead(ctx, e, o, t); ov != nil {
			idle[t.name] = ov
			fmt.Fprintf(stdout, "%-18s no load     zdctl reload p50 %.0f ms; toolkit overhead p50 %.1f ms, max %.1f ms\n",
				t.name, ov.ZdctlP50MS, ov.ToolkitP50, ov.ToolkitMax)
		}
	}
	rep := &resultsFile{Machine: m, MaxKeepAlive: maxKA, MaxClose: maxClose, Options: o, Results: results, Idle: idle}
	if err := rep.write(o.out, o.jsonOut); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", o.out)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

// isBuilt reports whether the zd-run binary is more than the stub that
// says "not built yet": the real one lists its flags in --help.
func isBuilt(path string) bool {
	out, err := exec.Command(path, "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "--workers")
}
