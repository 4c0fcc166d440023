package zdhandoff

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// handoffSocket is the listening handoff socket and the identity of its
// file, so that exiting never removes a successor's socket.
type handoffSocket struct {
	ln       *net.UnixListener
	path     string
	dev, ino uint64
}

// listenHandoff binds path, replacing atomically (bind elsewhere, rename)
// whatever socket is there — in a chain the predecessor still serves on it.
func listenHandoff(path string) (*handoffSocket, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode().Type() != os.ModeSocket {
		return nil, cmdkit.UsageError("choose another --socket path", "%s exists and is not a socket", path)
	}
	dir := path[:strings.LastIndexByte(path, '/')+1]
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, cmdkit.Wrap(err, cmdkit.ExitFailure, "create the socket's directory, or choose another --socket")
		}
	}
	tmp := fmt.Sprintf("%s.zdh%d", dir, os.Getpid())
	os.Remove(tmp)
	f, err := listenfd.Spec{Network: "unix", Address: absPath(tmp), Mode: 0o600}.Listen()
	if err != nil {
		return nil, cmdkit.Wrap(err, cmdkit.ExitFailure, "check that the directory of --socket is writable, and the path short")
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Stat(tmp, &st); err != nil {
		os.Remove(tmp)
		return nil, cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	fl, err := net.FileListener(f)
	if err != nil {
		os.Remove(tmp)
		return nil, cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	if err := os.Rename(tmp, path); err != nil {
		fl.Close()
		os.Remove(tmp)
		return nil, cmdkit.Wrap(err, cmdkit.ExitFailure, "check that the directory of --socket is writable")
	}
	ln := fl.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	return &handoffSocket{ln: ln, path: path, dev: st.Dev, ino: st.Ino}, nil
}

func absPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

// close stops listening and removes the socket file if it is still ours.
func (h *handoffSocket) close(log *slog.Logger) {
	h.ln.Close()
	var st unix.Stat_t
	if err := unix.Stat(h.path, &st); err == nil && st.Dev == h.dev && st.Ino == h.ino {
		os.Remove(h.path)
	} else {
		log.Debug("socket path belongs to a successor; left in place", "socket", h.path)
	}
}
