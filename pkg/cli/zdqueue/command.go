// Package zdqueue is the command tree of zd-queue, the request-buffering
// reverse proxy.
package zdqueue

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Main runs zd-queue with args (args[0] is the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func newCommand(_ cmdkit.IO) *cli.Command {
	return &cli.Command{
		Name:  "zd-queue",
		Usage: "reverse proxy that holds, prioritises and replays requests while workers change",
		Action: func(context.Context, *cli.Command) error {
			return cmdkit.NotBuilt("zd-queue", "zd-queue")
		},
	}
}
