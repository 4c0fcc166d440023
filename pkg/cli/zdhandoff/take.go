package zdhandoff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/handoff"
	"github.com/zdtools/zd/pkg/listenfd"
)

// cliError turns an error of pkg/handoff into a user-facing one with the
// documented exit code and a hint in terms of the command's flags.
func cliError(err error, path string, timeout time.Duration) error {
	var he *handoff.Error
	if !errors.As(err, &he) {
		return err
	}
	e := &cmdkit.Error{Code: cmdkit.ExitFailure, Message: he.Message, Hint: he.Hint, Err: he.Err}
	switch he.Kind {
	case handoff.KindTimeout:
		return timeoutError(he.Err, he.Message, timeout)
	case handoff.KindNotRunning:
		e.Code = cmdkit.ExitNotRunning
		e.Hint = "nothing serves on " + path + " any more (a stale socket file); start zd-handoff serve"
		if errors.Is(he, syscall.ENOENT) {
			e.Hint = "start zd-handoff serve --socket " + path + " first, or check --socket (ZD_HANDOFF_SOCKET)"
		}
	case handoff.KindUsage:
		e.Code = cmdkit.ExitUsage
	}
	return e
}

// runTake: zd-handoff take --socket PATH [--name N]... [--release] -- CMD [ARGS].
func runTake(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	log, timeout, path, err := commonFlags(c, io)
	if err != nil {
		return err
	}
	cmdArgs := commandArgs(c.Args().Slice())
	if len(cmdArgs) == 0 {
		return cmdkit.UsageError("write zd-handoff take --socket PATH -- CMD [ARGS]", "take needs a command to run after --")
	}
	var names []string
	for _, n := range c.StringSlice("name") {
		if err := listenfd.ValidName(n); err != nil {
			return cmdkit.UsageError("names are 1-255 printable ASCII characters without ':'", "--name %q: %v", n, err)
		}
		names = append(names, n)
	}
	cmdPath, err := lookPath(cmdArgs[0])
	if err != nil {
		return err
	}
	release := c.Bool("release")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, rep, fds, err := handoff.Take(ctx, path, names, release)
	if err != nil {
		return cliError(err, path, timeout)
	}
	defer conn.Close()
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = fd.File
	}
	defer closeFiles(files)
	log.Debug("took", "socket", path, "server", rep.PID, "fds", len(files), "exec", cmdPath)
	if !release {
		conn.Close()
		return cmdkit.Wrap(execInPlace(cmdPath, cmdArgs, files, nil), cmdkit.ExitFailure,
			"check that "+cmdArgs[0]+" is an executable the kernel can run")
	}
	if err := handoff.SendStatus(ctx, conn, handoff.Status{V: handoff.Version, Op: handoff.OpExec}); err != nil {
		return timeoutError(fmt.Errorf("tell %s we exec: %w", path, err), "handoff server at "+path, timeout)
	}
	err = execInPlace(cmdPath, cmdArgs, files, conn)
	handoff.SendStatus(ctx, conn, handoff.Status{V: handoff.Version, Op: handoff.OpFailed, Error: err.Error()})
	return cmdkit.Wrap(err, cmdkit.ExitFailure, "check that "+cmdArgs[0]+" is an executable; the server keeps serving")
}

// lsOutput is the JSON form of ls.
type lsOutput struct {
	Socket string    `json:"socket"`
	PID    int       `json:"pid"`
	FDs    []lsEntry `json:"fds"`
}

type lsEntry struct {
	FD int `json:"fd"`
	handoff.Offer
	Network string `json:"network"`
}

// runLs: zd-handoff ls --socket PATH [--json].
func runLs(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	if _, err := logger(c, io); err != nil {
		return err
	}
	timeout, err := durationFlag(c, "timeout")
	if err != nil {
		return err
	}
	path, err := socketPath(c, io)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := handoff.Ls(ctx, path)
	if err != nil {
		return cliError(err, path, timeout)
	}
	out := lsOutput{Socket: path, PID: rep.PID, FDs: make([]lsEntry, len(rep.FDs))}
	for i, o := range rep.FDs {
		out.FDs[i] = lsEntry{FD: listenfd.FirstFD + i, Offer: o,
			Network: listenfd.Info{Family: o.Family, Type: o.Type}.Network()}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "FD\tNAME\tNETWORK\tLOCAL\n")
	for _, e := range out.FDs {
		nw := e.Network
		if nw == "" {
			nw = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.FD, e.Name, nw, e.Local)
	}
	return tw.Flush()
}
