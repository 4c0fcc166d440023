package zdqueue

import (
	"os"
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// Every flag and environment variable of zd-queue is in the README and in
// zd-queue(1).
func TestFlagsDocumented(t *testing.T) {
	for _, doc := range []string{"../../../README.md", "../../../man/zd-queue.1"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if missing := cmdkit.Undocumented(newCommand(cmdkit.IO{}), string(b)); len(missing) > 0 {
			t.Errorf("%s does not mention %v", doc, missing)
		}
	}
}
