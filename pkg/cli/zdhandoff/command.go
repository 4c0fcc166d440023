// Package zdhandoff is the command tree of zd-handoff: open sockets and exec a
// command with them, offer held file descriptors on a unix socket, take them
// and exec, and list what is on offer. The protocol itself (server, taker,
// release handshake, the handoff socket) is pkg/handoff; this package adds
// flags, the child process and its signals, exec in place and the output.
package zdhandoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Defaults of the bounded waits.
const (
	defaultTimeout = 30 * time.Second
	defaultGrace   = 30 * time.Second
)

// Main runs zd-handoff with args (args[0] is the program name) and returns
// the exit code. A process started as zd-handoff's own exec shim (see
// shim.go) never gets as far as the command tree.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	if io.Getenv(envShim) == "1" {
		return runShim(args, io)
	}
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func stopAfter(n int) *int { return &n }

func newCommand(io cmdkit.IO) *cli.Command {
	socketFlag := &cli.StringFlag{
		Name:    "socket",
		Aliases: []string{"s"},
		Usage:   "the handoff `PATH` (a unix socket); default $ZD_STATE_DIR/handoff.sock",
		Sources: cmdkit.EnvVars("ZD_HANDOFF_SOCKET", "HANDOFF_SOCKET_PATH"),
	}
	timeoutFlag := &cli.StringFlag{
		Name:    "timeout",
		Usage:   "bound of every wait (connect, exchange); a Go `DURATION` like 30s, or seconds",
		Value:   defaultTimeout.String(),
		Sources: cmdkit.EnvVars("ZD_HANDOFF_TIMEOUT", "HANDOFF_TIMEOUT"),
	}
	return &cli.Command{
		Name:  "zd-handoff",
		Usage: "pass listening sockets and other file descriptors between unrelated processes",
		Description: "zd-handoff keeps a listening socket open while the processes using it are replaced:\n" +
			"listen creates sockets and execs a command with them (LISTEN_FDS), serve offers the\n" +
			"descriptors it holds on a unix socket, take receives them and execs a command with them.\n\n" +
			"  zd-handoff listen tcp://:8080 -- zd-handoff serve --socket /run/app/h.sock -- ./app\n" +
			"  zd-handoff take --socket /run/app/h.sock --release -- zd-handoff serve --socket /run/app/h.sock -- ./app",
		Flags: cmdkit.LogFlags(),
		Commands: []*cli.Command{
			{
				Name:      "listen",
				Usage:     "create sockets and exec a command with them (LISTEN_FDS)",
				ArgsUsage: "ADDR... -- CMD [ARGS]",
				Description: "Creates a socket for each ADDR, then replaces itself (same pid) with CMD, the sockets at\n" +
					"fds 3, 4, ... and LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES set. ADDR is\n" +
					"[NAME=]tcp|tcp4|tcp6|udp|udp4|udp6://HOST:PORT or [NAME=]unix|unixpacket|unixgram:///PATH or unix://@ABSTRACT,\n" +
					"with options ?backlog=N&reuseaddr=0|1&reuseport=0|1&v6only=0|1&mode=0660.",
				// Flags of CMD must reach CMD untouched, and "--" must stay where it is.
				SkipFlagParsing: true,
				Action:          func(ctx context.Context, c *cli.Command) error { return runListen(ctx, c, io) },
			},
			{
				Name:      "serve",
				Usage:     "offer held file descriptors on a unix socket",
				ArgsUsage: "[-- CMD [ARGS]]",
				Description: "Offers the descriptors this process holds (its LISTEN_FDS, or the --fd ones) to whoever\n" +
					"connects to --socket and asks. With CMD, also runs CMD as a child with those descriptors\n" +
					"(LISTEN_FDS), forwards TERM, INT, HUP, USR1 and USR2 to it and exits with its status.\n" +
					"After a take --release, serve keeps serving until its successor (the zd-handoff serve that\n" +
					"take ran) has its child ready and answers on --socket; then it stops its child (TERM, then\n" +
					"KILL after --grace) and exits 0. A successor that dies or is not ready within\n" +
					"--release-timeout changes nothing: serve goes on, and logs why (the successor exits 3).",
				StopOnNthArg: stopAfter(1),
				Flags: []cli.Flag{
					socketFlag, timeoutFlag,
					&cli.StringSliceFlag{Name: "fd", Usage: "offer descriptor `N[=NAME]` of this process instead of LISTEN_FDS (repeatable)"},
					&cli.BoolFlag{Name: "once", Usage: "stop offering after one handoff"},
					&cli.StringFlag{Name: "grace", Usage: "`DURATION` CMD gets to stop after TERM (on release or a forwarded signal) before KILL", Value: defaultGrace.String(),
						Sources: cmdkit.EnvVars("ZD_HANDOFF_GRACE", "GRACEFUL_SHUTDOWN_TIMEOUT")},
					&cli.StringFlag{Name: "release-timeout", Usage: "`DURATION` a successor gets to prove itself after a take --release (default: --timeout)",
						Sources: cmdkit.EnvVars("ZD_HANDOFF_RELEASE_TIMEOUT")},
					&cli.StringFlag{Name: "settle", Usage: "CMD is ready once it has run this `DURATION` without exiting (unless --notify)", Value: "1s",
						Sources: cmdkit.EnvVars("ZD_HANDOFF_SETTLE")},
					&cli.BoolFlag{Name: "notify", Usage: "give CMD a NOTIFY_SOCKET; it is ready when it sends READY=1", Sources: cmdkit.EnvVars("ZD_HANDOFF_NOTIFY")},
					&cli.StringSliceFlag{Name: "allow-gid", Usage: "also allow peers of group `GID` (repeatable); same uid and root are always allowed",
						Sources: cmdkit.EnvVars("ZD_HANDOFF_ALLOW_GID")},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runServe(ctx, c, io) },
			},
			{
				Name:      "take",
				Usage:     "take offered file descriptors and exec a command with them",
				ArgsUsage: "-- CMD [ARGS]",
				Description: "Connects to --socket, receives the descriptors on offer (or the --name ones, in that order)\n" +
					"and replaces itself (same pid) with CMD, the descriptors at fds 3, 4, ... and LISTEN_FDS,\n" +
					"LISTEN_PID, LISTEN_FDNAMES set. With --release, CMD must run zd-handoff serve on the same\n" +
					"--socket: the old server stops once that serve's child is ready and it answers there.",
				StopOnNthArg: stopAfter(1),
				Flags: []cli.Flag{
					socketFlag, timeoutFlag,
					&cli.StringSliceFlag{Name: "name", Usage: "take only the descriptors named `NAME` (repeatable; order kept)"},
					&cli.BoolFlag{Name: "release", Usage: "tell the server to stop (and stop its child) once CMD, a zd-handoff serve, is ready"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runTake(ctx, c, io) },
			},
			{
				Name:  "ls",
				Usage: "list what a handoff socket offers",
				Flags: []cli.Flag{
					socketFlag, timeoutFlag,
					&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runLs(ctx, c, io) },
			},
		},
	}
}

// logger builds the run's logger from the root flags.
// commonFlags reads what serve and take both take: the logger, --timeout
// and the handoff socket's path.
func commonFlags(c *cli.Command, io cmdkit.IO) (log *slog.Logger, timeout time.Duration, path string, err error) {
	if log, err = logger(c, io); err != nil {
		return nil, 0, "", err
	}
	if timeout, err = durationFlag(c, "timeout"); err != nil {
		return nil, 0, "", err
	}
	if path, err = socketPath(c, io); err != nil {
		return nil, 0, "", err
	}
	return log, timeout, path, nil
}

func logger(c *cli.Command, io cmdkit.IO) (*slog.Logger, error) {
	return cmdkit.NewLogger(io.Stderr, c.String("log-format"), c.String("log-level"))
}

// durationFlag parses a duration flag: a Go duration or a number of seconds.
func durationFlag(c *cli.Command, name string) (time.Duration, error) {
	s := c.String(name)
	d, err := cmdkit.ParseDuration(s)
	if err != nil {
		return 0, cmdkit.UsageError("write "+cmdkit.DurationSyntax, "--%s %q is not a duration: %v", name, s, err)
	}
	return d, nil
}

// socketPath returns --socket, or $ZD_STATE_DIR/handoff.sock.
func socketPath(c *cli.Command, io cmdkit.IO) (string, error) {
	p := c.String("socket")
	if p == "" {
		if dir := io.Getenv("ZD_STATE_DIR"); dir != "" {
			p = filepath.Join(dir, "handoff.sock")
		}
	}
	if p == "" {
		return "", cmdkit.UsageError("pass --socket PATH (or set ZD_HANDOFF_SOCKET or ZD_STATE_DIR)",
			"%s needs a handoff socket", c.FullName())
	}
	if len(p) > 107 {
		return "", cmdkit.UsageError("choose a shorter path: a unix socket path has at most 107 bytes",
			"socket path %q is %d bytes long", p, len(p))
	}
	return p, nil
}

// gids parses --allow-gid values.
func gids(c *cli.Command) ([]int, error) {
	var out []int
	for _, v := range c.StringSlice("allow-gid") {
		for _, s := range cmdkit.SplitList(v) {
			g, err := strconv.Atoi(s)
			if err != nil || g < 0 {
				return nil, cmdkit.UsageError("pass a numeric group id, e.g. --allow-gid 1001", "--allow-gid %q is not a group id", s)
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// commandArgs returns CMD and its arguments after an optional leading "--".
func commandArgs(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}

// timeoutError turns a context deadline into exit code 6 with a hint.
func timeoutError(err error, what string, d time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: fmt.Sprintf("%s: no answer within %v", what, d),
			Hint: "raise --timeout (or ZD_HANDOFF_TIMEOUT), or check that the server is not stuck"}
	}
	return err
}
