package zdqueue

import (
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-queue is in the README and in
// zd-queue(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zd-queue.1")
}
