package zdctl

import (
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zdctl is in the README and in
// zdctl(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zdctl.1")
}
