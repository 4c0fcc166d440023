package zdsnapshot

import (
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-snapshot is in the README and in
// zd-snapshot(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zd-snapshot.1")
}
