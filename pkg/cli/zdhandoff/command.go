// Package zdhandoff is the command tree of zd-handoff: open sockets and exec a
// command with them, offer held file descriptors on a unix socket, take them
// and exec, and list what is on offer.
package zdhandoff

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Main runs zd-handoff with args (args[0] is the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func newCommand(_ cmdkit.IO) *cli.Command {
	notBuilt := func(name string) cli.ActionFunc {
		return func(context.Context, *cli.Command) error {
			return cmdkit.NotBuilt("zd-handoff "+name, "the foundation (zd-handoff)")
		}
	}
	return &cli.Command{
		Name:  "zd-handoff",
		Usage: "pass listening sockets and other file descriptors between unrelated processes",
		Commands: []*cli.Command{
			{Name: "listen", Usage: "create sockets and exec a command with them (LISTEN_FDS)", ArgsUsage: "ADDR... -- CMD [ARGS]", Action: notBuilt("listen")},
			{Name: "serve", Usage: "offer held file descriptors on a unix socket", Action: notBuilt("serve")},
			{Name: "take", Usage: "take offered file descriptors and exec a command with them", ArgsUsage: "-- CMD [ARGS]", Action: notBuilt("take")},
			{Name: "ls", Usage: "list what a handoff socket offers", Action: notBuilt("ls")},
		},
	}
}
