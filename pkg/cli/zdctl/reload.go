package zdctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/ui"
)

// reload runs `zdctl reload` or `zdctl rollback`: it streams zd-run's
// progress (one line per step on stderr) and prints the result.
func reload(ctx context.Context, c *cli.Command, io cmdkit.IO, op string) error {
	sock := runSock(c, io)
	timeout, err := parseTimeout(c, "timeout", 0)
	if err != nil {
		return err
	}
	args := runapi.ReloadArgs{Strategy: c.String("strategy"), TimeoutMS: timeout.Milliseconds()}
	handoff := isHandoff(args.Strategy)
	switch op {
	case runapi.OpReload:
		args.Exclusive, args.Force = c.Bool("exclusive"), c.Bool("force")
		if args.Exclusive && handoff {
			return cmdkit.UsageError("--exclusive replaces the workers, a handoff replaces zd-run and keeps them: drop one of the two",
				"reload --exclusive --strategy handoff makes no sense")
		}
	case runapi.OpRollback:
		if handoff {
			return cmdkit.UsageError("a rollback replaces the workers; use --strategy rolling or blue-green",
				"rollback --strategy handoff makes no sense: a handoff keeps the workers on their release")
		}
		if c.Args().Len() > 1 {
			return cmdkit.TooManyArgs(c, 1)
		}
		if args.Target, err = rollbackTarget(c.Args().First()); err != nil {
			return err
		}
	}
	bound := 30 * time.Minute
	if timeout > 0 {
		bound = timeout + 30*time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	opt := uiOptions(io.Stderr, io)
	asJSON := c.Bool("json")
	// Needed to recognise a handoff's re-exec (also when zd-run's own
	// --strategy is handoff and none is given here); a reload naming rolling
	// or blue-green cannot be one and skips the round trip.
	var before runapi.Status
	switch strings.ToLower(strings.TrimSpace(args.Strategy)) {
	case runapi.StrategyRolling, runapi.StrategyBlueGreen, "bluegreen":
	default:
		if before, err = getStatus(ctx, sock); err != nil {
			return err
		}
	}
	start := time.Now()
	execSeen := false
	var res runapi.ReloadResult
	err = control.CallStream(ctx, sock, op, args, func(raw msgpack.RawMessage) error {
		var e runapi.Event
		if err := control.Unmarshal(raw, &e); err != nil {
			return nil
		}
		if e.Kind == "exec" {
			execSeen = true
		}
		if !asJSON {
			ui.Event(io.Stderr, e, opt)
		}
		return nil
	}, &res)
	if execSeen && err != nil && !errors.As(err, new(*control.Error)) {
		// The old image hung up by re-executing: wait for the new one.
		res, err = awaitUpgrade(ctx, sock, before, start)
	}
	if err != nil {
		cerr := callError(err, sock)
		if asJSON {
			var ce *cmdkit.Error
			r := runapi.ReloadResult{Strategy: args.Strategy, Error: runapi.Text(cerr.Error()),
				DurationMS: float64(time.Since(start).Microseconds()) / 1000}
			if errors.As(cerr, &ce) {
				r.Hint = runapi.Text(ce.Hint)
			}
			_ = writeJSON(io.Stdout, r)
		}
		return cerr
	}
	if asJSON {
		return writeJSON(io.Stdout, res)
	}
	if res.Upgraded {
		printUpgrade(io.Stdout, res)
		return nil
	}
	ui.Reload(io.Stdout, res, uiOptions(io.Stdout, io))
	if res.RolledBackFrom != "" {
		printRollback(io.Stdout, res)
	}
	return nil
}

// isHandoff reports whether a --strategy names the handoff (the origin
// calls it socket-handoff).
func isHandoff(strategy string) bool {
	s := strings.ToLower(strings.TrimSpace(strategy))
	return s == runapi.StrategyHandoff || s == "socket-handoff"
}

// rollbackTarget checks rollback's argument: "" (the previous release), a
// generation number, or a path, made absolute here (zd-run runs elsewhere).
func rollbackTarget(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 {
			return "", cmdkit.UsageError("generations count from 1; zdctl status shows the current one", "rollback %s: not a generation", t)
		}
		return t, nil
	}
	abs, err := filepath.Abs(t)
	if err != nil {
		return "", cmdkit.UsageError("give a generation number or a release path", "rollback %s: %v", t, err)
	}
	return abs, nil
}

// printUpgrade says what a handoff did: zd-run was replaced, the workers
// were not, and whether the command path now leads elsewhere.
func printUpgrade(w io.Writer, r runapi.ReloadResult) {
	fmt.Fprintf(w, "zd-run upgraded in place (handoff, %.1f ms); no new generation: the workers were kept\n", r.DurationMS)
	fmt.Fprintf(w, "workers kept on generation %d, release %s\n", r.Generation, r.Release)
	if r.ResolvesTo != "" {
		fmt.Fprintf(w, "the command now resolves to %s: `zdctl reload` deploys it\n", r.ResolvesTo)
	}
}

// printRollback says what a rollback did to the release link and to the
// next plain reload.
func printRollback(w io.Writer, r runapi.ReloadResult) {
	fmt.Fprintf(w, "rolled back from %s to %s\n", r.RolledBackFrom, r.Release)
	switch l := r.Link; {
	case l == nil:
		fmt.Fprintln(w, "the command path runs through no symlink: nothing was re-pointed")
	case l.Error == "" && l.Now != l.Was:
		fmt.Fprintf(w, "re-pointed %s -> %s (was %s): a plain `zdctl reload` now redeploys the release rolled back to\n", l.Path, l.Now, l.Was)
	case l.Error == "":
		fmt.Fprintf(w, "%s -> %s already leads to the release rolled back to\n", l.Path, l.Now)
	default:
		fmt.Fprintf(w, "%s -> %s not re-pointed: %s\n", l.Path, l.Was, l.Error)
	}
	fmt.Fprintf(w, "a plain `zdctl reload` refuses %s until another release is deployed (--force deploys it)\n", r.RolledBackFrom)
}

// awaitUpgrade polls zd-run's status until the new image answers with a
// higher upgrade count and the same pid (bounded by ctx).
func awaitUpgrade(ctx context.Context, sock string, before runapi.Status, start time.Time) (runapi.ReloadResult, error) {
	res := runapi.ReloadResult{Strategy: runapi.StrategyHandoff, Generation: before.Generation}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := getStatus(ctx, sock)
		if err == nil && st.Upgrades > before.Upgrades {
			if st.PID != before.PID {
				return res, fmt.Errorf("zd-run came back with pid %d, not %d", st.PID, before.PID)
			}
			res.ReloadSuccessful, res.Upgraded = true, true
			res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
			res.Generation, res.Release = st.Generation, runapi.Text(st.Release)
			if st.ResolvesTo != "" && string(st.ResolvesTo) != st.Release {
				res.ResolvesTo = st.ResolvesTo
			}
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond): // the re-exec takes ~10 ms
		}
	}
	return res, &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: "zd-run re-executed itself but did not answer within 30s",
		Hint: "check zd-run's log; under systemd, `systemctl status` shows whether it is still running"}
}

func stop(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	sock := runSock(c, io)
	timeout, err := parseTimeout(c, "timeout", 5*time.Minute)
	if err != nil {
		return err
	}
	st, err := getStatus(ctx, sock)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = control.Call(cctx, sock, runapi.OpStop, runapi.StopArgs{Now: c.Bool("now")}, nil)
	cancel()
	if err != nil {
		return callError(err, sock)
	}
	if c.Bool("no-wait") {
		fmt.Fprintf(io.Stdout, "stopping %s (pid %d)\n", st.Name, st.PID)
		return nil
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := getStatus(ctx, sock); err != nil {
			var ce *cmdkit.Error
			if errors.As(err, &ce) && ce.Code == cmdkit.ExitNotRunning {
				fmt.Fprintf(io.Stdout, "stopped %s (pid %d)\n", st.Name, st.PID)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: fmt.Sprintf("zd-run (pid %d) still running after %v", st.PID, timeout),
		Hint: "workers may be slow to drain (zd-run's --grace); zdctl stop --now kills them"}
}
