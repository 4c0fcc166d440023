package handoff

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/zdtools/zd/pkg/listenfd"
	"golang.org/x/sys/unix"
)

// Socket is a listening handoff socket and the identity of its file, so
// that closing it never removes a successor's socket.
type Socket struct {
	ln       *net.UnixListener
	path     string // the handoff path
	tmp      string // where it was bound; "" once renamed onto path
	dev, ino uint64
}

// Bind binds a socket next to path, under a temporary name: it answers
// there (the successor's hello) until Publish renames it onto path. path
// itself is left alone: in a chain the predecessor still serves on it.
// Errors are *Error: KindUsage when path exists and is not a socket.
func Bind(path string) (*Socket, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode().Type() != os.ModeSocket {
		return nil, &Error{Kind: KindUsage, Step: "stat", Message: path + " exists and is not a socket", Hint: "choose another socket path"}
	}
	dir := path[:strings.LastIndexByte(path, '/')+1]
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, &Error{Step: "mkdir", Err: err}
		}
	}
	tmp := fmt.Sprintf("%s.zdh%d", dir, os.Getpid())
	os.Remove(tmp)
	f, err := listenfd.Spec{Network: "unix", Address: AbsPath(tmp), Mode: 0o600}.Listen()
	if err != nil {
		return nil, &Error{Step: "bind", Err: err}
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Stat(tmp, &st); err != nil {
		os.Remove(tmp)
		return nil, &Error{Step: "bind", Err: err}
	}
	fl, err := net.FileListener(f)
	if err != nil {
		os.Remove(tmp)
		return nil, &Error{Step: "bind", Err: err}
	}
	ln := fl.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	return &Socket{ln: ln, path: path, tmp: tmp, dev: st.Dev, ino: st.Ino}, nil
}

// Listen binds path at once, replacing atomically (bind elsewhere, rename)
// whatever socket is there.
func Listen(path string) (*Socket, error) {
	h, err := Bind(path)
	if err != nil {
		return nil, err
	}
	if err := h.Publish(); err != nil {
		h.ln.Close()
		os.Remove(h.tmp)
		return nil, err
	}
	return h, nil
}

// Publish renames the socket onto the handoff path. The rename is atomic:
// a client finds the old socket or this one, never no file. Publishing a
// published socket does nothing.
func (h *Socket) Publish() error {
	if h.tmp == "" {
		return nil
	}
	unlock, _ := lockDir(h.path)
	defer unlock()
	if err := os.Rename(h.tmp, h.path); err != nil {
		return &Error{Step: "rename", Err: err}
	}
	h.tmp = ""
	return nil
}

// Ours reports whether the handoff path is this socket's file.
func (h *Socket) Ours() bool {
	var st unix.Stat_t
	return unix.Stat(h.path, &st) == nil && st.Dev == h.dev && st.Ino == h.ino
}

// Where is the path this socket answers on now.
func (h *Socket) Where() string {
	if h.tmp != "" {
		return h.tmp
	}
	return h.path
}

// Path is the handoff path.
func (h *Socket) Path() string { return h.path }

// AbsPath returns p made absolute against the working directory (p as it
// is if that is unknown).
func AbsPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

// Close stops listening and removes the socket file if it is still ours.
// The check and the removal hold the directory's lock, which Publish also
// takes, so a successor's socket renamed in between is never removed.
func (h *Socket) Close(log *slog.Logger) {
	h.ln.Close()
	if h.tmp != "" {
		os.Remove(h.tmp)
		return
	}
	unlock, locked := lockDir(h.path)
	defer unlock()
	if locked && h.Ours() {
		os.Remove(h.path)
	} else {
		log.Debug("socket path belongs to a successor; left in place", "socket", h.path)
	}
}

// drain accepts, without waiting, the connections already queued on the
// listener, so that closing it resets none of them.
func (h *Socket) drain(handle func(*net.UnixConn)) {
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
// most a second; it returns the unlock and whether it got the lock.
// Without the lock (it could not be taken in time) the caller goes on:
// Publish is atomic anyway, and Close then leaves the file alone rather
// than risk removing a successor's.
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
