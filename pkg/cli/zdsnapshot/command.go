// Package zdsnapshot is the command tree of zd-snapshot: pack, unpack,
// inspect, verify, diff and keygen for .zds connection-state snapshot files
// (the format is pkg/snapshot's; docs/snapshot-format.md).
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

func newCommand(io cmdkit.IO) *cli.Command {
	keyFile := func() cli.Flag {
		return &cli.StringFlag{Name: "key-file", Aliases: []string{"k"},
			Usage:   "read the AES-256 key from `FILE` (64 hex digits or base64; mode 0600); else $ZD_SNAPSHOT_KEY, else $CONNECTION_STATE_KEY",
			Sources: cmdkit.EnvVars("ZD_SNAPSHOT_KEY_FILE")}
	}
	filter := func() cli.Flag {
		return &cli.StringFlag{Name: "filter", Aliases: []string{"f"},
			Usage: "only records matching `TERMS`: kind=ws-session,state=active|idle,worker=PID,protocol=h2,backend=ADDR"}
	}
	jsonFlag := func(what string) cli.Flag {
		return &cli.BoolFlag{Name: "json", Usage: "print " + what + " as JSON on stdout"}
	}
	cmd := &cli.Command{
		Name:  "zd-snapshot",
		Usage: "pack, unpack, inspect, verify and compare connection-state snapshots (.zds)",
		Description: "A .zds file holds connection state (WebSocket sessions, held requests, TCP\n" +
			"connections, listeners, workers) as msgpack records in sealed chunks (zstd, then\n" +
			"AES-256-GCM when a key is given). pack and unpack convert from and to JSON lines, so\n" +
			"any language can write and read snapshots in a pipeline.\n\n" +
			"  app-dump | zd-snapshot pack -o state.zds\n" +
			"  zd-snapshot inspect state.zds --filter kind=ws-session,state=active\n" +
			"  zd-snapshot unpack state.zds | app-restore",
		Commands: []*cli.Command{
			{
				Name: "pack", Usage: "read JSON lines on stdin and write a .zds snapshot",
				ArgsUsage: "-o FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the snapshot to `FILE` (- for stdout)", Required: true},
					keyFile(),
					&cli.BoolFlag{Name: "plain", Usage: "write no encryption even when a key is set (credential headers are then redacted)"},
					&cli.StringFlag{Name: "compress", Value: "on", Usage: "zstd `LEVEL`: off, on (= fastest), fastest, default, better or best",
						Sources: cmdkit.EnvVars("ZD_SNAPSHOT_COMPRESS", "CONNECTION_COMPRESSION")},
					&cli.StringFlag{Name: "writer", Value: "zd-snapshot pack", Usage: "the writer `NAME` recorded in the header"},
					&cli.Uint64Flag{Name: "generation", Usage: "the writer's generation recorded in the header"},
					&cli.IntFlag{Name: "chunk-size", Value: 256 << 10, Usage: "plaintext `BYTES` per sealed chunk (at most 32 MiB)"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runPack(ctx, c, io) },
			},
			{
				Name: "unpack", Usage: "read a .zds snapshot and write its records as JSON lines on stdout",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{keyFile(), filter(), &cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Usage: "stop after `N` records (0: all; a stopped read does not check the whole file)"}},
				Action:    func(ctx context.Context, c *cli.Command) error { return runUnpack(ctx, c, io) },
			},
			{
				Name: "inspect", Usage: "show a snapshot's header and its records counted by kind, protocol, state, worker and age",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{keyFile(), filter(), jsonFlag("the header and counts"),
					&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 10, Usage: "list the first `N` matching records (0: none)"},
					&cli.BoolFlag{Name: "layout", Usage: "also list the byte regions of the file (magic, header, each chunk's frame, nonce, body, tag)"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runInspect(ctx, c, io) },
			},
			{
				Name: "verify", Usage: "check a snapshot's integrity, key and schema; the exit code says which failed",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{keyFile(), jsonFlag("the result")},
				Action:    func(ctx context.Context, c *cli.Command) error { return runVerify(ctx, c, io) },
			},
			{
				Name: "diff", Usage: "compare two snapshots by record id: added, gone, changed (exit 10 when they differ)",
				ArgsUsage: "A B",
				Flags:     []cli.Flag{keyFile(), filter(), jsonFlag("the differences")},
				Action:    func(ctx context.Context, c *cli.Command) error { return runDiff(ctx, c, io) },
			},
			{
				Name: "keygen", Usage: "make a new AES-256 key: 64 hex digits on stdout, or in a new file (mode 0600)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the key to `FILE` (created 0600; an existing file is kept)"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing --output file"},
				},
				Action: func(ctx context.Context, c *cli.Command) error { return runKeygen(ctx, c, io) },
			},
		},
	}
	cmdkit.RefuseArgs(cmd)
	return cmd
}
