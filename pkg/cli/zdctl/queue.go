package zdctl

import (
	"context"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// queueCommand is `zdctl queue ...`: control of zd-queue's request buffer
// over queue.sock.
func queueCommand() *cli.Command {
	nb := func(name string) cli.ActionFunc {
		return func(context.Context, *cli.Command) error { return cmdkit.NotBuilt("zdctl queue "+name, "zd-queue") }
	}
	return &cli.Command{Name: "queue", Usage: "control zd-queue's request buffer", Commands: []*cli.Command{
		{Name: "pause", Usage: "hold new requests", Action: nb("pause")},
		{Name: "resume", Usage: "replay held requests and pass traffic through", Action: nb("resume")},
		{Name: "flush", Usage: "answer every held request with 503 + Retry-After", Action: nb("flush")},
		{Name: "drain", Usage: "stop routing to a backend and wait until it has nothing in flight", Action: nb("drain")},
	}}
}
