package zdsnapshot

import (
	"strconv"
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-snapshot is in the README and in
// zd-snapshot(1).
func TestFlagsDocumented(t *testing.T) {
	cmdkit.CheckDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zd-snapshot.1")
}

// Every command, and every command's arguments, are in the README and in
// zd-snapshot(1) as --help shows them.
func TestCommandsDocumented(t *testing.T) {
	cmdkit.CheckCommandsDocumented(t, newCommand(cmdkit.IO{}), "../../../README.md", "../../../man/zd-snapshot.1")
}

func TestCapRows(t *testing.T) {
	var rows [][2]string
	for i := range 20 {
		rows = append(rows, [2]string{strconv.Itoa(4000 + i), "2"})
	}
	got := capRows(rows, 12)
	if len(got) != 12 || got[11] != [2]string{"(9 more)", "18"} || got[0] != rows[0] {
		t.Errorf("capRows(20 rows, 12) = %v", got)
	}
	if got := capRows(rows[:5], 12); len(got) != 5 {
		t.Errorf("capRows(5 rows, 12) has %d rows", len(got))
	}
}
