// Command zd-queue is a zd daemon; see man/zd-queue.1. It handles its own signals
// (HUP, USR2, TERM, INT, QUIT), so main does not install a signal context.
package main

import (
	"context"
	"os"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/cli/zdqueue"
)

func main() {
	os.Exit(zdqueue.Main(context.Background(), os.Args, cmdkit.OSIO()))
}
