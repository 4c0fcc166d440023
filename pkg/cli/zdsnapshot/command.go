// Package zdsnapshot is the command tree of zd-snapshot: pack, unpack,
// inspect, verify, diff and keygen for .zds connection-state snapshot files.
package zdsnapshot

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Main runs zd-snapshot with args (args[0] is the program name) and returns
// the exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func newCommand(_ cmdkit.IO) *cli.Command {
	notBuilt := func(name string) cli.ActionFunc {
		return func(context.Context, *cli.Command) error {
			return cmdkit.NotBuilt("zd-snapshot "+name, "snapshots and live connection migration")
		}
	}
	cmd := &cli.Command{
		Name:  "zd-snapshot",
		Usage: "pack, unpack, inspect and verify connection-state snapshots (.zds)",
	}
	for _, c := range []struct{ name, usage string }{
		{"pack", "read JSON lines and write a .zds snapshot"},
		{"unpack", "read a .zds snapshot and write JSON lines"},
		{"inspect", "show a snapshot's header and record counts"},
		{"verify", "check a snapshot's integrity and key"},
		{"diff", "compare two snapshots"},
		{"keygen", "write a new AES-256 key"},
	} {
		cmd.Commands = append(cmd.Commands, &cli.Command{Name: c.name, Usage: c.usage, Action: notBuilt(c.name)})
	}
	return cmd
}
