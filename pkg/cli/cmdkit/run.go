package cmdkit

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v3"
)

// IO is the outside world of one program run: its standard streams and
// environment. Injected so tests and testscript can run programs in-process.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// OSIO is the IO of the real process.
func OSIO() IO {
	return IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// Run runs the command tree cmd with args (args[0] is the program name),
// reports any error on io.Stderr and returns the exit code. It wires the tree
// so that the cli library never exits the process and so that usage errors
// (unknown flags, bad values, unknown commands) become exit code 2 with a hint.
// A boolean flag takes its value as --flag=false or --flag false.
func Run(ctx context.Context, cmd *cli.Command, args []string, io IO) int {
	cmd.Writer = io.Stdout
	cmd.ErrWriter = io.Stderr
	cmd.Reader = io.Stdin
	cmd.Version = Version()
	cmd.EnableShellCompletion = true
	cmd.Suggest = true
	cmd.ExitErrHandler = func(context.Context, *cli.Command, error) {}
	setUsageHandlers(cmd, cmd.Name)
	err := cmd.Run(ctx, joinBoolValues(cmd, args))
	var ze *Error
	if err != nil && !errors.As(err, &ze) {
		// A bad value in an environment variable does not pass through
		// OnUsageError.
		if msg := usageMessage(err.Error()); msg != err.Error() {
			err = UsageError("fix the value, or unset the variable", "%s", msg)
		}
	}
	return Report(io.Stderr, cmd.Name, err)
}

func setUsageHandlers(cmd *cli.Command, root string) {
	if cmd.OnUsageError == nil {
		cmd.OnUsageError = func(_ context.Context, c *cli.Command, err error, _ bool) error {
			return UsageError("run '"+c.FullName()+" --help' to see the usage", "%s", usageMessage(err.Error()))
		}
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		// A group command run with an unknown or no subcommand is a usage error,
		// not a silent help page with exit 0.
		cmd.Action = func(_ context.Context, c *cli.Command) error {
			if c.Args().Len() == 0 {
				_ = cli.ShowSubcommandHelp(c)
				return UsageError("run '"+c.FullName()+" --help' to see the commands", "%s needs a command", c.FullName())
			}
			return UsageError("run '"+c.FullName()+" --help' to see the commands",
				"unknown command %q for %s", c.Args().First(), c.FullName())
		}
	}
	for _, sub := range cmd.Commands {
		setUsageHandlers(sub, root)
	}
}

// EnvVars lists the environment variables a flag reads, in order of
// precedence: the ZD_* name first, then the origin's aliases.
func EnvVars(names ...string) cli.ValueSourceChain {
	return cli.EnvVars(names...)
}

// SplitList splits a comma-separated flag or environment value, dropping
// empty items and surrounding space.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
