package zdhandoff

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/listenfd"
)

// runListen: zd-handoff listen ADDR... -- CMD [ARGS].
func runListen(_ context.Context, c *cli.Command, io cmdkit.IO) error {
	if _, err := logger(c, io); err != nil {
		return err
	}
	args := c.Args().Slice()
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		return cli.ShowSubcommandHelp(c)
	}
	sep := slices.Index(args, "--")
	if sep < 0 {
		// Without "--", addresses are the leading args that look like one.
		sep = slices.IndexFunc(args, func(a string) bool { return !strings.Contains(a, "://") })
		if sep < 0 {
			sep = len(args)
		}
	}
	addrs, cmdArgs := args[:sep], commandArgs(args[sep:])
	if len(addrs) == 0 {
		return cmdkit.UsageError("write zd-handoff listen ADDR... -- CMD [ARGS], e.g. listen tcp://:8080 -- ./app",
			"listen needs at least one address")
	}
	if len(cmdArgs) == 0 {
		return cmdkit.UsageError("write zd-handoff listen ADDR... -- CMD [ARGS]", "listen needs a command to run after --")
	}
	specs := make([]listenfd.Spec, len(addrs))
	for i, a := range addrs {
		sp, err := listenfd.ParseSpec(a)
		if err != nil {
			return cmdkit.UsageError("addresses look like tcp://127.0.0.1:8080, tcp://:8080, web=tcp6://[::1]:8080, unix:///run/app.sock?mode=0660", "%v", err)
		}
		specs[i] = sp
	}
	path, err := lookPath(cmdArgs[0])
	if err != nil {
		return err
	}
	files, err := listenfd.ListenAll(specs)
	if err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "check that the address is free (ss -ltnp) and that you may bind it")
	}
	err = execInPlace(path, cmdArgs, files, nil)
	for _, f := range files {
		f.Close()
	}
	return cmdkit.Wrap(err, cmdkit.ExitFailure, "check that "+cmdArgs[0]+" is an executable the kernel can run")
}

// lookPath resolves a command like a shell does, with a hint when it can't.
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil && !errors.Is(err, exec.ErrDot) {
		return "", cmdkit.Wrap(err, cmdkit.ExitFailure, "check the command name and $PATH (or give a path like ./app)")
	}
	return path, nil
}
