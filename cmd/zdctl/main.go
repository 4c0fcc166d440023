// Command zdctl: the operator's command for zd-run and zd-queue. See man/zdctl.1.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/cli/zdctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := zdctl.Main(ctx, os.Args, cmdkit.OSIO())
	stop()
	os.Exit(code)
}
