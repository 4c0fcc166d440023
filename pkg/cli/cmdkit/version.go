package cmdkit

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is stamped at link time by the build scripts
// (-ldflags "-X github.com/zdtools/zd/pkg/cli/cmdkit.version=v0.1.0"); it is
// the only value linked in this way.
var version = "dev"

// Version returns "VERSION (commit REV[+dirty], GOVERSION)" from the linked
// version and the VCS information Go records in the binary.
func Version() string {
	rev, dirty := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	return fmt.Sprintf("%s (commit %s%s, %s)", version, rev, dirty, runtime.Version())
}
