package zdhandoff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/fdpass"
	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// dial connects to the handoff socket and sends req; it returns the
// connection and the server's (successful) reply. A connection that meets
// a server just handing the path to its successor (refused or closed
// without an answer, while the file at path changed) is tried again.
func dial(ctx context.Context, path string, req request, timeout time.Duration) (*net.UnixConn, reply, error) {
	for attempt := 0; ; attempt++ {
		before := fileID(path)
		conn, rep, retry, err := dialOnce(ctx, path, req, timeout)
		if !retry || attempt >= 8 || fileID(path) == before || ctx.Err() != nil {
			return conn, rep, err
		}
	}
}

// fileID identifies the file at path (device and inode), "" if none.
func fileID(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprint(st.Dev, ":", st.Ino)
}

// dialOnce is one attempt of dial; retry says whether the failure may be
// a server going away mid-handoff.
func dialOnce(ctx context.Context, path string, req request, timeout time.Duration) (*net.UnixConn, reply, bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, reply{}, errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT), dialError(err, path, timeout)
	}
	conn := nc.(*net.UnixConn)
	var rep reply
	werr := fdpass.WriteMsg(ctx, conn, req)
	// Read even if the write failed: a server that refuses us answers and
	// hangs up without reading, and its answer is waiting for us.
	err = fdpass.ReadMsg(ctx, conn, maxMsg, &rep)
	if err != nil && werr != nil {
		err = werr
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) {
			return nil, reply{}, true, cmdkit.Failf(cmdkit.ExitFailure, "check the server's log", "handoff server at %s closed the connection without an answer", path)
		}
		return nil, reply{}, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE),
			timeoutError(fmt.Errorf("talk to handoff server at %s: %w", path, err), "handoff server at "+path, timeout)
	}
	if !rep.OK {
		conn.Close()
		e := &cmdkit.Error{Code: cmdkit.ExitFailure, Message: "handoff server at " + path + " (pid " + fmt.Sprint(rep.PID) + "): unknown error"}
		if rep.Error != nil {
			e.Message = "handoff server at " + path + " (pid " + fmt.Sprint(rep.PID) + "): " + rep.Error.Message
			e.Hint = rep.Error.Hint
		}
		return nil, reply{}, false, e
	}
	return conn, rep, false, nil
}

func dialError(err error, path string, timeout time.Duration) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return cmdkit.Wrap(err, cmdkit.ExitNotRunning, "start zd-handoff serve --socket "+path+" first, or check --socket (ZD_HANDOFF_SOCKET)")
	case errors.Is(err, syscall.ECONNREFUSED):
		return cmdkit.Wrap(err, cmdkit.ExitNotRunning, "nothing serves on "+path+" any more (a stale socket file); start zd-handoff serve")
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "the handoff socket is private (0600): run as its owner or root")
	}
	return timeoutError(err, "connect to "+path, timeout)
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
	// ls and a plain take are the same in every version (servers of the
	// first one answer them); a release needs the confirmation of version 2.
	v := baseVersion
	if release {
		v = protoVersion
	}
	conn, rep, err := dial(ctx, path, request{V: v, Op: opTake, Names: names, Release: release}, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	fds, err := fdpass.Recv(ctx, conn, maxTakeFDs)
	if err != nil {
		return timeoutError(cmdkit.Wrap(fmt.Errorf("take fds from %s: %w", path, err), cmdkit.ExitFailure,
			"check the server's log; both sides must run the same zd-handoff version"), "take fds from "+path, timeout)
	}
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
	if err := fdpass.WriteMsg(ctx, conn, status{V: protoVersion, Op: opExec}); err != nil {
		return timeoutError(fmt.Errorf("tell %s we exec: %w", path, err), "handoff server at "+path, timeout)
	}
	err = execInPlace(cmdPath, cmdArgs, files, conn)
	fdpass.WriteMsg(ctx, conn, status{V: protoVersion, Op: opFailed, Error: err.Error()})
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
	offer
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
	conn, rep, err := dial(ctx, path, request{V: baseVersion, Op: opLs}, timeout)
	if err != nil {
		return err
	}
	conn.Close()
	out := lsOutput{Socket: path, PID: rep.PID, FDs: make([]lsEntry, len(rep.FDs))}
	for i, o := range rep.FDs {
		out.FDs[i] = lsEntry{FD: listenfd.FirstFD + i, offer: o,
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
