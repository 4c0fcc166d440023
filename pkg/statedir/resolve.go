package statedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Resolve returns the state directory to use. In order:
//
//   - flagValue, when not empty (from --state-dir or ZD_STATE_DIR);
//   - $XDG_RUNTIME_DIR/zd/NAME, when XDG_RUNTIME_DIR is set;
//   - /run/zd/NAME, when running as root;
//   - /tmp/zd-UID/NAME otherwise.
//
// An empty name becomes DefaultName. A name that CheckName refuses is made
// safe ('/' and NUL become '_', "." and ".." become DefaultName) so Resolve
// never escapes its parent directory; call CheckName first to report a bad
// name to the user instead. getenv is usually os.Getenv.
func Resolve(flagValue, name string, getenv func(string) string) string {
	return resolve(flagValue, name, getenv, os.Geteuid())
}

func resolve(flagValue, name string, getenv func(string) string, uid int) string {
	if flagValue != "" {
		return flagValue
	}
	name = safeName(name)
	if xdg := getenv("XDG_RUNTIME_DIR"); xdg != "" && filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "zd", name)
	}
	if uid == 0 {
		return filepath.Join("/run/zd", name)
	}
	// Not os.TempDir: a daemon and a zdctl with different $TMPDIRs must
	// still meet.
	return filepath.Join("/tmp", "zd-"+strconv.Itoa(uid), name)
}

// CheckName reports whether name can be used as a service name: a single
// path element, not "." or "..", without NUL bytes. The empty name is
// valid and means DefaultName.
func CheckName(name string) error {
	switch {
	case name == "":
		return nil
	case name == "." || name == "..":
		return &Error{
			Message: fmt.Sprintf("invalid service name %q", name),
			Hint:    "use a plain name such as \"web\" (--name)",
		}
	case strings.ContainsAny(name, "/\x00"):
		return &Error{
			Message: fmt.Sprintf("invalid service name %q: it contains '/' or NUL", name),
			Hint:    "use a plain name such as \"web\" (--name), or give the whole path with --state-dir",
		}
	}
	return nil
}

func safeName(name string) string {
	if name == "" || name == "." || name == ".." {
		return DefaultName
	}
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, name)
}
