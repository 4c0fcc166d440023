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

// Every command, and every command's arguments, are in the README and in
// zdctl(1) as --help shows them.
func TestCommandsDocumented(t *testing.T) {
	cmdkit.CheckCommandsDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zdctl.1")
}
