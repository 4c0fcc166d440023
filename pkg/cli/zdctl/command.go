// Package zdctl is the command tree of zdctl, the operator's command: it
// talks to zd-run over run.sock (status, reload, rollback, stop, health) and
// to zd-queue over queue.sock (queue ...), prints for people (pkg/ui) or,
// with --json, for programs.
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

func newCommand(io cmdkit.IO) *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout (the origin's field names)"}
	cmd := &cli.Command{
		Name:  "zdctl",
		Usage: "operate zd-run and zd-queue: status, reload, rollback, stop, queue control",
		Description: "Exit codes: 0 ok, 1 failure, 2 usage, 3 reload aborted (the old generation is still serving),\n" +
			"4 not running, 5 degraded (health), 6 timeout. See zdctl(1).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state-dir", Usage: "state directory of the service (default $XDG_RUNTIME_DIR/zd/NAME, /run/zd/NAME as root, else /tmp/zd-UID/NAME)", Sources: cmdkit.EnvVars("ZD_STATE_DIR")},
			&cli.StringFlag{Name: "name", Value: "default", Usage: "service name", Sources: cmdkit.EnvVars("ZD_NAME")},
		},
		Commands: []*cli.Command{
			{
				Name: "status", Usage: "show workers, health and the last reload",
				Flags: []cli.Flag{jsonFlag,
					&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "keep showing the status as it changes (until interrupted)"},
					&cli.StringFlag{Name: "interval", Value: "1s", Usage: "--watch: refresh at least this often"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return status(ctx, c, io) },
			},
			{
				Name: "reload", Usage: "replace the workers with the release the command path points to now",
				Flags: []cli.Flag{jsonFlag,
					&cli.StringFlag{Name: "strategy", Aliases: []string{"s"}, Usage: "rolling|blue-green|handoff (default: zd-run's --strategy); handoff upgrades zd-run and keeps the workers"},
					&cli.StringFlag{Name: "timeout", Usage: "abort the reload if it is not done after this long (e.g. 60 or 60s; exit 6)"},
					&cli.BoolFlag{Name: "exclusive", Usage: "for apps that cannot run two generations at once: pause zd-queue, stop old, start new, resume (not with handoff)"},
					&cli.BoolFlag{Name: "force", Usage: "deploy even the release the last rollback rolled back from (a plain reload refuses it)"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return reload(ctx, c, io, "reload") },
			},
			{
				Name: "rollback", Usage: "go back to the previous release (or to TARGET) and re-point the command's symlink to it",
				ArgsUsage: "[GENERATION|PATH]",
				Description: "Without TARGET, rollback respawns the release that served before the current one. TARGET is a\n" +
					"generation number, or the path of a release directory (put where the command's symlink points)\n" +
					"or executable. When the command path runs through a symlink (current -> releases/45) that still\n" +
					"leads to the release rolled back from, rollback re-points it to the release rolled back to, so\n" +
					"the next `zdctl reload` does not bring the bad release back; a plain reload refuses the release\n" +
					"rolled back from in any case (reload --force deploys it).",
				Flags: []cli.Flag{jsonFlag,
					&cli.StringFlag{Name: "strategy", Aliases: []string{"s"}, Usage: "rolling|blue-green (default: zd-run's --strategy; rolling when that is handoff)"},
					&cli.StringFlag{Name: "timeout", Usage: "abort if not done after this long (exit 6)"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return reload(ctx, c, io, "rollback") },
			},
			{
				Name: "stop", Usage: "drain and stop the service",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "now", Usage: "do not drain: KILL the workers"},
					&cli.BoolFlag{Name: "no-wait", Usage: "return once the stop has begun"},
					&cli.StringFlag{Name: "timeout", Value: "5m", Usage: "longest wait for zd-run to exit"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return stop(ctx, c, io) },
			},
			{
				Name: "health", Usage: "exit 0 when healthy (or reloading), 5 when degraded, 4 when not running",
				Flags: []cli.Flag{jsonFlag,
					&cli.StringFlag{Name: "wait", Usage: "wait up to this long for the service to be healthy with no reload in progress (for scripts, deploys and probes)"},
					&cli.IntFlag{Name: "generation", Usage: "with --wait: also wait until this generation (or a later one) serves"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return health(ctx, c, io) },
			},
			queueCommand(),
			snapshotCommand(io),
		},
	}
	cmdkit.RefuseArgs(cmd)
	return cmd
}
