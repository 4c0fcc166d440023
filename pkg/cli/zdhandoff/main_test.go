package zdhandoff

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
)

// The test binary doubles as zd-handoff when ZDHANDOFF_TEST_MAIN=1, so
// tests can run it as another user or with descriptors set up.
func TestMain(m *testing.M) {
	if os.Getenv("ZDHANDOFF_TEST_VIASHIM") == "1" {
		os.Exit(viaShimChild())
	}
	if os.Getenv("ZDHANDOFF_TEST_MAIN") == "1" {
		os.Args[0] = "zd-handoff"
		os.Exit(Main(context.Background(), os.Args, cmdkit.OSIO()))
	}
	os.Exit(m.Run())
}

// viaShimChild passes its fds 3 and 4 (as b, a; 4 first) to the command
// in its arguments through the shim; fd 5, if open, is the connection to
// tell about a failed exec.
func viaShimChild() int {
	os.Unsetenv("ZDHANDOFF_TEST_VIASHIM")
	os.Setenv("ZDHANDOFF_TEST_MAIN", "1") // the shim image runs Main
	files := []*os.File{os.NewFile(4, "b"), os.NewFile(3, "a")}
	var conn *net.UnixConn
	if l, _ := os.Readlink("/proc/self/fd/5"); strings.HasPrefix(l, "socket:") {
		if c, err := net.FileConn(os.NewFile(5, "conn")); err == nil {
			conn = c.(*net.UnixConn)
		}
	}
	err := execViaShim(os.Args[1], os.Args[1:], files, conn)
	fmt.Fprintln(os.Stderr, "execViaShim:", err)
	return 3
}
