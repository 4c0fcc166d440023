// Package zdctl is the command tree of zdctl, the operator's command.
package zdctl

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Main runs zdctl with args (args[0] is the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func newCommand(_ cmdkit.IO) *cli.Command {
	nb := func(name, topic string) cli.ActionFunc {
		return func(context.Context, *cli.Command) error { return cmdkit.NotBuilt("zdctl "+name, topic) }
	}
	return &cli.Command{
		Name:  "zdctl",
		Usage: "operate zd-run and zd-queue: status, reload, rollback, stop, queue control",
		Commands: []*cli.Command{
			{Name: "status", Usage: "show workers, health and the queue", Action: nb("status", "zd-run and zdctl")},
			{Name: "reload", Usage: "reload the workers (blue-green, rolling or handoff)", Action: nb("reload", "zd-run and zdctl")},
			{Name: "rollback", Usage: "respawn the previous release", Action: nb("rollback", "zd-run and zdctl")},
			{Name: "stop", Usage: "drain and stop the service", Action: nb("stop", "zd-run and zdctl")},
			{Name: "health", Usage: "exit 0 when healthy, 5 when degraded", Action: nb("health", "zd-run and zdctl")},
			queueCommand(),
		},
	}
}
