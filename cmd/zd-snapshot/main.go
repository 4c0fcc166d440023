// Command zd-snapshot: pack, unpack, inspect and verify connection-state snapshots. See man/zd-snapshot.1.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/cli/zdsnapshot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := zdsnapshot.Main(ctx, os.Args, cmdkit.OSIO())
	stop()
	os.Exit(code)
}
