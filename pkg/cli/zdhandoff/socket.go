package zdhandoff

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// handoffSocket is the listening handoff socket and the identity of its
// file, so that exiting never removes a successor's socket.
type handoffSocket struct {
	ln       *net.UnixListener
	path     string // the handoff path
	tmp      string // where it was bound; "" once renamed onto path
	dev, ino uint64
}

// bindHandoff binds a socket next to path, under a temporary name: it
// answers there (the successor's hello) until publish renames it onto
// path. path itself is left alone — in a chain the predecessor still
// serves on it.
func bindHandoff(path string) (*handoffSocket, error) {
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
	ln := fl.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	return &handoffSocket{ln: ln, path: path, tmp: tmp, dev: st.Dev, ino: st.Ino}, nil
}

// listenHandoff binds path at once, replacing atomically (bind elsewhere,
// rename) whatever socket is there.
func listenHandoff(path string) (*handoffSocket, error) {
	h, err := bindHandoff(path)
	if err != nil {
		return nil, err
	}
	if err := h.publish(); err != nil {
		h.ln.Close()
		os.Remove(h.tmp)
		return nil, err
	}
	return h, nil
}

// publish renames the socket onto the handoff path. The rename is atomic:
// a client finds the old socket or this one, never no file.
func (h *handoffSocket) publish() error {
	if h.tmp == "" {
		return nil
	}
	unlock, _ := lockDir(h.path)
	defer unlock()
	if err := os.Rename(h.tmp, h.path); err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "check that the directory of --socket is writable")
	}
	h.tmp = ""
	return nil
}

// ours reports whether the handoff path is this socket's file.
func (h *handoffSocket) ours() bool {
	var st unix.Stat_t
	return unix.Stat(h.path, &st) == nil && st.Dev == h.dev && st.Ino == h.ino
}

// where is the path this socket answers on.
func (h *handoffSocket) where() string {
	if h.tmp != "" {
		return h.tmp
	}
	return h.path
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
// The check and the removal hold the directory's lock, which publish also
// takes, so a successor's socket renamed in between is never removed.
func (h *handoffSocket) close(log *slog.Logger) {
	h.ln.Close()
	if h.tmp != "" {
		os.Remove(h.tmp)
		return
	}
	unlock, locked := lockDir(h.path)
	defer unlock()
	if locked && h.ours() {
		os.Remove(h.path)
	} else {
		log.Debug("socket path belongs to a successor; left in place", "socket", h.path)
	}
}

// drain accepts, without waiting, the connections already queued on the
// listener, so that closing it resets none of them.
func (h *handoffSocket) drain(handle func(*net.UnixConn)) {
	rc, err := h.ln.SyscallConn()
	if err != nil {
		return
	}
	var fds []int
	rc.Control(func(fd uintptr) {
		for range 4096 {
			nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err != nil {
				return
			}
			fds = append(fds, nfd)
		}
	})
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "handoff-conn")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			continue
		}
		handle(c.(*net.UnixConn))
	}
}

// lockDir takes an exclusive flock on the directory of path, waiting at
// most a second; it returns the unlock and whether it got the lock. Without the lock (it could not be
// taken in time) the caller goes on: publish is atomic anyway, and close
// then leaves the file alone rather than risk removing a successor's.
func lockDir(path string) (unlock func(), locked bool) {
	dir := path[:strings.LastIndexByte(path, '/')+1]
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return func() {}, false
	}
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Close(fd) }, true
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			unix.Close(fd)
			return func() {}, false
		}
		time.Sleep(time.Millisecond)
	}
}
