package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Listen creates the control socket at path and returns a Server for it
// (call Serve to answer requests). The socket file gets mode 0600, or 0660
// when opts.AllowGIDs is set (with its group set to the first allowed gid;
// the state directory must also let that group in). A stale socket file,
// one nobody answers on, is replaced; Listen fails with "another process is
// serving PATH" when a live server answers there, and when path exists and
// is not a socket.
func Listen(path string, opts Options) (*Server, error) {
	if path == "" {
		return nil, errors.New("listen on control socket: empty path")
	}
	if err := checkPathLen(path); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	mode := uint32(0o600)
	if len(opts.AllowGIDs) > 0 {
		mode = 0o660
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: socket: %w", path, err)
	}
	// The socket file takes the socket inode's mode (minus umask) at bind:
	// set it first so the file is never more open than intended.
	if err := unix.Fchmod(fd, mode); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %s: fchmod: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %s: bind: %w", path, err)
	}
	fail := func(err error) (*Server, error) {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, os.FileMode(mode)); err != nil {
		return fail(err)
	}
	if len(opts.AllowGIDs) > 0 {
		if err := os.Lchown(path, -1, opts.AllowGIDs[0]); err != nil {
			return fail(err)
		}
	}
	if err := unix.Listen(fd, 128); err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fail(err)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	s, err := FromListener(l.(*net.UnixListener), opts)
	if err != nil {
		l.Close()
		os.Remove(path)
		return nil, err
	}
	s.unlinkDev, s.unlinkIno = st.Dev, st.Ino
	return s, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen on %s: it exists and is not a socket; remove it or choose another state directory", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another process is serving %s; stop it first, or choose another state directory or --name", path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("listen on %s: probe existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen on %s: remove stale socket: %w", path, err)
	}
	return nil
}

// maxPathLen is the longest filesystem path a unix socket address holds
// (sun_path is 108 bytes, including the terminating NUL).
const maxPathLen = 107

func checkPathLen(path string) error {
	if len(path) > maxPathLen {
		return fmt.Errorf("socket path is %d bytes, longer than the %d a unix socket address holds; choose a shorter --state-dir", len(path), maxPathLen)
	}
	return nil
}

// FromFile returns a Server for the listening unix socket f, typically
// inherited from a predecessor (see File). f is not used after the call and
// the caller should close it. Unlike FromListener, the Server owns the
// socket file: Close removes it, as after Listen.
func FromFile(f *os.File, opts Options) (*Server, error) {
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control socket from fd %d: %w", f.Fd(), err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("control socket from fd %d: not a unix socket (%T)", f.Fd(), l)
	}
	ul.SetUnlinkOnClose(false) // Close removes the file only if it is still ours
	s, err := FromListener(ul, opts)
	if err != nil {
		ul.Close()
		return nil, err
	}
	var st unix.Stat_t
	if unix.Stat(s.path, &st) == nil {
		s.unlinkDev, s.unlinkIno = st.Dev, st.Ino
	}
	return s, nil
}
