package zdctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/statedir"
	"github.com/zdtools/zd/pkg/ui"
	"golang.org/x/sys/unix"
)

// runSock is zd-run's control socket for the --state-dir/--name in effect.
func runSock(c *cli.Command, io cmdkit.IO) string {
	return filepath.Join(statedir.Resolve(c.String("state-dir"), c.String("name"), io.Getenv), statedir.RunSock)
}

// uiOptions renders for a terminal only when stdout is one, and in colour
// only without NO_COLOR.
func uiOptions(w io.Writer, io cmdkit.IO) ui.Options {
	f, ok := w.(*os.File)
	if !ok {
		return ui.Options{}
	}
	// SyscallConn, not Fd: Fd would switch a non-blocking stdout (shared
	// with the shell or a pipeline) to blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return ui.Options{}
	}
	var terr error
	if err := rc.Control(func(fd uintptr) { _, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil || terr != nil {
		return ui.Options{}
	}
	return ui.Options{Terminal: true, Color: io.Getenv("NO_COLOR") == "" && io.Getenv("TERM") != "dumb"}
}

// callError turns a control-socket error into a user-facing one with the
// documented exit code.
func callError(err error, sock string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, control.ErrNotRunning) {
		return &cmdkit.Error{Code: cmdkit.ExitNotRunning, Message: "zd-run is not running (nothing answers on " + sock + ")",
			Hint: "start it, or give the --name or --state-dir it runs with"}
	}
	var ce *control.Error
	if errors.As(err, &ce) {
		code := cmdkit.ExitFailure
		switch ce.Code {
		case control.CodeAborted:
			code = cmdkit.ExitReloadAborted
		case control.CodeBadRequest:
			code = cmdkit.ExitUsage
		case control.CodeTimeout:
			code = cmdkit.ExitTimeout
		}
		return &cmdkit.Error{Code: code, Message: ce.Message, Hint: ce.Hint}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: "no answer from zd-run on " + sock + " in time",
			Hint: "raise --timeout; if zd-run seems stuck, its log says what it was doing"}
	}
	return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
}

func parseTimeout(c *cli.Command, name string, def time.Duration) (time.Duration, error) {
	v := c.String(name)
	if v == "" {
		return def, nil
	}
	d, err := cmdkit.ParseDuration(v)
	if err == nil && d == 0 {
		err = errors.New("must be more than 0")
	}
	if err != nil {
		return 0, cmdkit.UsageError("use "+cmdkit.DurationSyntax, "--%s %q: %v", name, v, err)
	}
	return d, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
