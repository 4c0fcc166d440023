package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reloadRun is one run of the reload command.
type reloadRun struct {
	start, end time.Duration // offsets from the run's start
	ExitCode   int           // -1 if it did not run or was killed
	Output     string        // the last bytes of its combined output
	Err        string        // why it failed, if it did
}

// maxReloadOutput bounds what is kept of a reload command's output.
const maxReloadOutput = 2 << 10

// runReloads runs cfg.ReloadCommand cfg.Reloads times, ReloadInterval apart,
// until ctx ends.
func runReloads(ctx context.Context, cfg Config, start time.Time) []reloadRun {
	var out []reloadRun
	t := time.NewTimer(cfg.ReloadInterval)
	defer t.Stop()
	for i := 0; i < cfg.Reloads; i++ {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
		r := runReload(ctx, cfg, start)
		cfg.Logger.Info("reload", "n", i+1, "exit", r.ExitCode, "took", r.end-r.start, "err", r.Err)
		out = append(out, r)
		t.Reset(cfg.ReloadInterval)
	}
	return out
}

func runReload(ctx context.Context, cfg Config, start time.Time) reloadRun {
	ctx, cancel := context.WithTimeout(ctx, cfg.ReloadTimeout)
	defer cancel()
	if cfg.ReloadFunc != nil {
		r := reloadRun{start: time.Since(start)}
		err := cfg.ReloadFunc(ctx)
		r.end = time.Since(start)
		if err != nil {
			r.ExitCode, r.Err = 1, err.Error()
		}
		return r
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", cfg.ReloadCommand)
	// Its own process group, so a timeout kills whatever it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = &tail, &tail
	r := reloadRun{start: time.Since(start), ExitCode: -1}
	err := cmd.Run()
	r.end = time.Since(start)
	r.Output = tail.String()
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.Err = fmt.Sprintf("reload command still running after %s, killed", cfg.ReloadTimeout)
	case err != nil:
		r.Err = err.Error()
	}
	return r
}

// tailBuffer keeps the last maxReloadOutput bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > maxReloadOutput {
		t.b = append(t.b[:0], t.b[len(t.b)-maxReloadOutput:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }

// window is a reload's span, as offsets from the run's start.
type window struct{ start, end time.Duration }

func readMarksFile(path string, start time.Time) ([]window, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read reload marks: %w", err)
	}
	defer f.Close()
	marks, err := ParseMarks(f)
	if err != nil {
		return nil, fmt.Errorf("read reload marks from %s: %w", path, err)
	}
	ws := make([]window, 0, len(marks))
	for _, m := range marks {
		ws = append(ws, window{m.Start.Sub(start), m.End.Sub(start)})
	}
	return ws, nil
}

// Mark is one reload window read from a marks file.
type Mark struct{ Start, End time.Time }

// maxMarks bounds how many windows a marks file may hold.
const maxMarks = 100000

// ParseMarks reads reload windows: one mark a line, "start UNIXNANO" then
// "stop UNIXNANO" (as `echo "start $(date +%s%N)"` writes), blank lines and
// lines starting with # ignored. A start without a stop is an open window
// that ends at the end of time (the reload was still running). It returns an
// error naming the line for anything else: an unknown word, a bad number, a
// stop without a start or before its start, two starts in a row, or more
// than 100000 windows.
func ParseMarks(r io.Reader) ([]Mark, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), 4096)
	var out []Mark
	var open *time.Time
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		word, num, ok := strings.Cut(text, " ")
		if !ok {
			return nil, fmt.Errorf("line %d: want \"start|stop UNIXNANO\", got %q", line, text)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || ns < 0 {
			return nil, fmt.Errorf("line %d: bad time %q: want nanoseconds since 1970", line, num)
		}
		t := time.Unix(0, ns)
		switch word {
		case "start":
			if open != nil {
				return nil, fmt.Errorf("line %d: start while a reload is already open", line)
			}
			open = &t
		case "stop":
			if open == nil {
				return nil, fmt.Errorf("line %d: stop without a start", line)
			}
			if t.Before(*open) {
				return nil, fmt.Errorf("line %d: stop before its start", line)
			}
			if len(out) >= maxMarks {
				return nil, fmt.Errorf("line %d: more than %d reload windows", line, maxMarks)
			}
			out = append(out, Mark{*open, t})
			open = nil
		default:
			return nil, fmt.Errorf("line %d: unknown mark %q: want start or stop", line, word)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read marks: %w", err)
	}
	if open != nil {
		out = append(out, Mark{*open, time.Unix(0, math.MaxInt64)})
	}
	return out, nil
}
