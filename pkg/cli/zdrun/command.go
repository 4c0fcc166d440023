// Package zdrun is the command tree of zd-run, the worker supervisor: it
// parses flags and their environment variables (ZD_* and the origin's
// names), opens or inherits the listening sockets, serves run.sock and runs
// a supervisor.Supervisor until stopped.
package zdrun

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/supervisor"
)

// Main runs zd-run with args (args[0] is the program name) and returns the
// exit code. When zd-run was started as its own worker exec shim (see
// supervisor.RunShim), it does that instead and never returns on success.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	// In the image an in-place upgrade has just exec'd, ask for the signals
	// before anything else: from the Go runtime's start until this call a
	// TERM or QUIT takes its default action (it ends zd-run and so its
	// workers); from here on it waits in sigC for the supervisor. See
	// README.md (zd-run, handoff) for the window that remains.
	var early chan os.Signal
	if io.Getenv(supervisor.UpgradeEnv) != "" {
		early = make(chan os.Signal, 8)
		notifySignals(early)
	}
	if isShim, code := supervisor.RunShim(io.Getenv, io.Stderr); isShim {
		return code
	}
	// The main goroutine forks the workers (see supervisor.ServeForks).
	return supervisor.ServeForks(func(fk *supervisor.Forker) int {
		return cmdkit.Run(ctx, newCommand(io, fk, early), args, io)
	})
}

func env(names ...string) cli.ValueSourceChain { return cmdkit.EnvVars(names...) }

// newCommand builds the command tree; early, when not nil, is the signal
// channel Main already registered (upgrade path).
func newCommand(io cmdkit.IO, fk *supervisor.Forker, early chan os.Signal) *cli.Command {
	stopAfterArgs := 1
	return &cli.Command{
		Name:      "zd-run",
		Usage:     "run N workers of an app on shared sockets and reload them without downtime",
		ArgsUsage: "[flags] -- CMD [ARGS...]",
		Description: "zd-run opens the listening sockets once, runs --workers copies of CMD that inherit them\n" +
			"(LISTEN_FDS, LISTEN_PID, NOTIFY_SOCKET), and replaces them on HUP or `zdctl reload`\n" +
			"without refusing a connection. Signals: HUP reload, USR2 upgrade zd-run in place,\n" +
			"TERM/INT graceful stop (a second one forces), QUIT stop now. See zd-run(1).",
		StopOnNthArg: &stopAfterArgs,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Aliases: []string{"l"}, Usage: "`[NAME=]ADDR` to listen on and share with every worker: tcp://HOST:PORT, tcp4://, tcp6://, udp://, unix:///path?mode=0660, unix://@abstract (repeatable)", Sources: env("ZD_LISTEN")},
			&cli.IntFlag{Name: "workers", Aliases: []string{"w"}, Value: 1, Usage: "number of worker processes", Sources: env("ZD_WORKERS", "WORKER_COUNT")},
			&cli.StringFlag{Name: "strategy", Value: "rolling", Usage: "reload `STRATEGY` of HUP and zdctl reload: rolling|blue-green|handoff", Sources: env("ZD_STRATEGY", "ZERO_DOWNTIME_STRATEGY")},
			&cli.IntFlag{Name: "max-surge", Value: 1, Usage: "rolling: slots replaced at once", Sources: env("ZD_MAX_SURGE")},
			&cli.StringFlag{Name: "ready", Value: "notify", Usage: "how a worker is known ready: notify|tcp:ADDR|http:URL|exec:CMD|delay:DUR ({slot} and {gen} expanded)", Sources: env("ZD_READY")},
			&cli.StringFlag{Name: "ready-timeout", Value: "30s", Usage: "longest wait for a new worker to be ready", Sources: env("ZD_READY_TIMEOUT")},
			&cli.StringFlag{Name: "grace", Value: "30s", Usage: "longest drain of a worker after the stop signal, then KILL (a bare number is seconds)", Sources: env("ZD_GRACE", "GRACEFUL_SHUTDOWN_TIMEOUT")},
			&cli.StringFlag{Name: "settle", Value: "0s", Usage: "a new worker must stay up this long after ready before it replaces an old one (catches releases that crash right after start)", Sources: env("ZD_SETTLE")},
			&cli.StringFlag{Name: "stop-signal", Value: "TERM", Usage: "signal that asks a worker to drain and exit", Sources: env("ZD_STOP_SIGNAL")},
			&cli.StringFlag{Name: "max-memory", Usage: "replace a worker whose RSS passes this (e.g. 128MB; a bare number is MB)", Sources: env("ZD_MAX_MEMORY", "MAX_WORKER_MEMORY_MB")},
			&cli.StringFlag{Name: "watchdog", Usage: "a ready worker must send WATCHDOG=1 at least this often (it gets WATCHDOG_USEC and WATCHDOG_PID) or be replaced", Sources: env("ZD_WATCHDOG")},
			&cli.IntFlag{Name: "respawn-limit", Value: 5, Usage: "restarts of crashed workers allowed within --respawn-window before the service is degraded", Sources: env("ZD_RESPAWN_LIMIT", "WORKER_RESPAWN_LIMIT")},
			&cli.StringFlag{Name: "respawn-window", Value: "300s", Usage: "window of --respawn-limit (a bare number is seconds)", Sources: env("ZD_RESPAWN_WINDOW", "WORKER_RESPAWN_WINDOW")},
			&cli.BoolFlag{Name: "no-respawn", Usage: "never restart a crashed worker (AUTO_RESTART_WORKERS=false)", Sources: env("ZD_NO_RESPAWN")},
			&cli.StringFlag{Name: "pre-stop", Usage: "shell command run before a worker is signalled (env ZD_SLOT, ZD_PID, ZD_GENERATION, ZD_BACKEND)", Sources: env("ZD_PRE_STOP")},
			&cli.IntFlag{Name: "max-fds", Usage: "RLIMIT_NOFILE of the workers", Sources: env("ZD_MAX_FDS", "WORKER_FILE_DESCRIPTOR_LIMIT")},
			&cli.FloatFlag{Name: "cpu-limit", Usage: "CPU limit of all workers together, in percent of one CPU (cgroup v2 cpu.max)", Sources: env("ZD_CPU_LIMIT", "WORKER_CPU_LIMIT")},
			&cli.StringFlag{Name: "user", Usage: "run the workers as this user (zd-run binds the sockets first)", Sources: env("ZD_USER")},
			&cli.StringFlag{Name: "group", Usage: "run the workers with this group (default: the user's)", Sources: env("ZD_GROUP")},
			&cli.StringFlag{Name: "worker-listen", Usage: "per-worker backend socket for zd-queue, e.g. unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", Sources: env("ZD_WORKER_LISTEN")},
			&cli.StringFlag{Name: "queue-socket", Usage: "zd-queue's control socket (default: queue.sock in the state dir, when present)", Sources: env("ZD_QUEUE_SOCKET")},
			&cli.StringFlag{Name: "drain-timeout", Usage: "bound of zd-queue's drain of a worker (default --grace)", Sources: env("ZD_DRAIN_TIMEOUT")},
			&cli.BoolFlag{Name: "check", Usage: "check the flags and the command, then exit 0 (used before a self-upgrade)"},
		}, cmdkit.StateFlags("run.sock"), cmdkit.LogFlags()),
		Action: func(ctx context.Context, c *cli.Command) error {
			return run(ctx, c, io, fk, early)
		},
	}
}

// notifySignals asks for every signal zd-run handles on c.
func notifySignals(c chan<- os.Signal) {
	signal.Notify(c, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
}
