package cmdkit

import "github.com/urfave/cli/v3"

// LogFlags are --log-format and --log-level, the flags every program's
// NewLogger call reads. Logs go to stderr.
func LogFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log `FORMAT` on stderr: text or json", Sources: EnvVars("ZD_LOG_FORMAT")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`: debug, info, warn or error", Sources: EnvVars("ZD_LOG_LEVEL")},
	}
}

// StateFlags are the flags of a daemon that keeps its control socket sock
// (run.sock, queue.sock) in the service's state directory: --state-dir,
// --name and --allow-gid. zd-run and zd-queue must agree on them, so that
// both, and zdctl, find the same directory.
func StateFlags(sock string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "state-dir", Usage: "state directory for " + sock + " and the pid file (default $XDG_RUNTIME_DIR/zd/NAME, /run/zd/NAME as root, else /tmp/zd-UID/NAME)", Sources: EnvVars("ZD_STATE_DIR")},
		&cli.StringFlag{Name: "name", Value: "default", Usage: "service name (names the state directory)", Sources: EnvVars("ZD_NAME")},
		&cli.StringSliceFlag{Name: "allow-gid", Usage: "also let members of this group use " + sock + " (repeatable)", Sources: EnvVars("ZD_ALLOW_GID")},
	}
}
