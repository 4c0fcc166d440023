// Package zdrun is the command tree of zd-run, the worker supervisor.
package zdrun

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Main runs zd-run with args (args[0] is the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func newCommand(_ cmdkit.IO) *cli.Command {
	return &cli.Command{
		Name:      "zd-run",
		Usage:     "run N workers of an app on shared sockets and reload them without downtime",
		ArgsUsage: "[flags] -- CMD [ARGS]",
		Action: func(context.Context, *cli.Command) error {
			return cmdkit.NotBuilt("zd-run", "zd-run and zdctl")
		},
	}
}
