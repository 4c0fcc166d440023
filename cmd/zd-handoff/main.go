// Command zd-handoff: pass file descriptors between unrelated processes. See man/zd-handoff.1.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/cli/zdhandoff"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := zdhandoff.Main(ctx, os.Args, cmdkit.OSIO())
	stop()
	os.Exit(code)
}
