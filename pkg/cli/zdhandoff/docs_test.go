package zdhandoff

import (
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-handoff is in the README and in
// zd-handoff(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zd-handoff.1")
}
