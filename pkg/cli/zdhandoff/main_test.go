package zdhandoff

import (
	"context"
	"os"
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// The test binary doubles as zd-handoff when ZDHANDOFF_TEST_MAIN=1, so
// tests can run it as another user or with descriptors set up.
func TestMain(m *testing.M) {
	if os.Getenv("ZDHANDOFF_TEST_MAIN") == "1" {
		os.Args[0] = "zd-handoff"
		os.Exit(Main(context.Background(), os.Args, cmdkit.OSIO()))
	}
	os.Exit(m.Run())
}
