package zdrun

import (
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-run is in the README and in
// zd-run(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}, nil, nil), "../../../README.md", "../../../man/zd-run.1")
}

// Every command, and every command's arguments, are in the README and in
// zd-run(1) as --help shows them.
func TestCommandsDocumented(t *testing.T) {
	cmdkit.CheckCommandsDocumented(t, newCommand(cmdkit.IO{}, nil, nil), "../../../README.md", "../../../man/zd-run.1")
}
