package zdctl

import (
	"context"
	"errors"
	"fmt"
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
	if op == runapi.OpReload {
		args.Exclusive = c.Bool("exclusive")
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
			r := runapi.ReloadResult{Strategy: args.Strategy, Error: cerr.Error(),
				DurationMS: float64(time.Since(start).Microseconds()) / 1000}
			if errors.As(cerr, &ce) {
				r.Hint = ce.Hint
			}
			_ = writeJSON(io.Stdout, r)
		}
		return cerr
	}
	if asJSON {
		return writeJSON(io.Stdout, res)
	}
	ui.Reload(io.Stdout, res, uiOptions(io.Stdout, io))
	return nil
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
			res.ReloadSuccessful = true
			res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
			res.Release = st.Version
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
