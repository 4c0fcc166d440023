package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Receiver is the receiving end of a notify socket, as a supervisor holds
// it. Receive is meant to be called from one goroutine at a time; Close,
// Path, Dropped and File may be called from any goroutine.
type Receiver struct {
	conn    *net.UnixConn
	path    string
	ino     uint64 // inode of the socket file we bound; 0 for abstract sockets
	dev     uint64
	dropped atomic.Uint64
}

// Message is one notification with the credentials the kernel attached to
// it. PID, UID and GID are 0 when the datagram carried no credentials (the
// sender is in another pid namespace, or sent before SO_PASSCRED was on), so
// never attribute a pid 0 message to a worker.
type Message struct {
	PID, UID, GID int
	Fields        []Field
	Raw           []byte
}

// Get returns the value of the last field named key, and whether there was
// one.
func (m Message) Get(key string) (string, bool) {
	for i := len(m.Fields) - 1; i >= 0; i-- {
		if m.Fields[i].Key == key {
			return m.Fields[i].Value, true
		}
	}
	return "", false
}

// Int returns the value of the last field named key as a decimal integer,
// e.g. m.Int(KeyExtendTimeoutUsec) or m.Int(KeyMainPID). ok is false when
// the field is missing or not an integer.
func (m Message) Int(key string) (n int64, ok bool) {
	v, ok := m.Get(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// Is reports whether the message sets key to "1", e.g. m.Is(KeyReady).
func (m Message) Is(key string) bool {
	v, ok := m.Get(key)
	return ok && v == "1"
}

// ErrClosed is returned by Receive after Close.
var ErrClosed = errors.New("notify socket closed")

// Listen creates a unix datagram socket at path ("@name" for an abstract
// socket) with SO_PASSCRED on, so every message carries the sender's pid,
// uid and gid. A filesystem socket gets mode 0600 (see the package comment
// for workers running as another user). A stale socket file at path is
// removed; Listen fails if path is something else than a socket, or if a
// live process is receiving on it.
func Listen(path string) (*Receiver, error) {
	if path == "" || (!strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@")) {
		return nil, fmt.Errorf("listen for notifications on %q: want an absolute path or @abstract name", path)
	}
	if len(path) > 107 {
		return nil, fmt.Errorf("listen for notifications on %s: the path is %d bytes, longer than the 107 a unix socket address holds", path, len(path))
	}
	abstract := path[0] == '@'
	if !abstract {
		if err := removeStale(path); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("listen for notifications on %s: socket: %w", path, err)
	}
	// SO_PASSCRED before bind: no datagram can arrive without credentials.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen for notifications on %s: SO_PASSCRED: %w", path, err)
	}
	if !abstract {
		// Linux creates the socket file with the socket inode's mode (minus
		// umask): set it before bind so the file is never more open than 0600.
		if err := unix.Fchmod(fd, 0o600); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("listen for notifications on %s: fchmod: %w", path, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen for notifications on %s: bind: %w", path, err)
	}
	r, err := fromFD(fd, path)
	if err != nil {
		if !abstract {
			os.Remove(path)
		}
		return nil, err
	}
	return r, nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen for notifications on %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen for notifications on %s: it exists and is not a socket; remove it or choose another path", path)
	}
	// connect(2) on a datagram socket sends nothing: it only tells whether
	// someone is bound there.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		c.Close()
		return fmt.Errorf("listen for notifications on %s: another process is receiving on it", path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("listen for notifications on %s: probe existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen for notifications on %s: remove stale socket: %w", path, err)
	}
	return nil
}

// fromFD wraps a bound datagram socket; it takes ownership of fd.
func fromFD(fd int, path string) (*Receiver, error) {
	f := os.NewFile(uintptr(fd), path)
	r, err := FromFile(f)
	f.Close()
	return r, err
}

// FromFile returns a Receiver for the bound unix datagram socket f, e.g. one
// inherited across an exec (File gives the descriptor to pass). f is not
// used after the call and the caller should close it. SO_PASSCRED is turned
// on. Close removes the socket file, as with a Receiver from Listen.
func FromFile(f *os.File) (*Receiver, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("notify socket from fd %d: %w", f.Fd(), err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("notify socket from fd %d: not a unix socket (%T)", f.Fd(), c)
	}
	r := &Receiver{conn: uc}
	var typ int
	var serr error
	rc, err := uc.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
			}
		})
	}
	if err == nil {
		err = serr
	}
	if err == nil && typ != unix.SOCK_DGRAM {
		err = fmt.Errorf("socket type %d is not SOCK_DGRAM", typ)
	}
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("notify socket from fd %d: %w", f.Fd(), err)
	}
	if a, ok := uc.LocalAddr().(*net.UnixAddr); ok {
		r.path = a.Name
	}
	if r.path == "" {
		uc.Close()
		return nil, fmt.Errorf("notify socket from fd %d: the socket is not bound to an address", f.Fd())
	}
	if r.path[0] != '@' {
		var st unix.Stat_t
		if err := unix.Stat(r.path, &st); err == nil {
			r.dev, r.ino = st.Dev, st.Ino
		}
	}
	return r, nil
}

// Path returns the socket's address as NOTIFY_SOCKET wants it: a filesystem
// path, or "@name" for an abstract socket.
func (r *Receiver) Path() string { return r.path }

// File returns a duplicate of the socket's descriptor, for passing to a
// re-exec'd successor (which calls FromFile). The caller closes it.
func (r *Receiver) File() (*os.File, error) {
	f, err := r.conn.File()
	if err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", r.path, err)
	}
	return f, nil
}

// Chown gives the socket file to uid and gid (-1 keeps one), so that
// workers running as that user may send to it; their user also needs search
// permission on every directory above it. It does nothing for an abstract
// socket, which anyone in the network namespace may send to.
func (r *Receiver) Chown(uid, gid int) error {
	if r.path[0] == '@' {
		return nil
	}
	if err := os.Lchown(r.path, uid, gid); err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	return nil
}

// Dropped returns how many datagrams Receive has ignored so far because they
// were larger than MaxDatagram or malformed.
func (r *Receiver) Dropped() uint64 { return r.dropped.Load() }

// Close closes the socket and removes its file, unless the file at the path
// is no longer the one this socket is bound to. Receive then returns an
// error wrapping ErrClosed.
func (r *Receiver) Close() error {
	err := r.conn.Close()
	if r.ino != 0 {
		var st unix.Stat_t
		if unix.Stat(r.path, &st) == nil && st.Dev == r.dev && st.Ino == r.ino {
			os.Remove(r.path)
		}
	}
	if err != nil {
		return fmt.Errorf("close notify socket %s: %w", r.path, err)
	}
	return nil
}

// oobSize fits credentials and the most descriptors a sender can attach
// (SCM_MAX_FD), so that we can close every descriptor sent to us.
var oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(253*4)

// Receive waits for the next well-formed notification and returns it.
// Datagrams larger than MaxDatagram or refused by Parse are skipped and
// counted (Dropped); descriptors sent along (FDSTORE=1) are closed. It
// returns ctx.Err() when ctx is done, an error wrapping ErrClosed after
// Close, and any other socket error wrapped.
func (r *Receiver) Receive(ctx context.Context) (Message, error) {
	buf := make([]byte, MaxDatagram+1)
	oob := make([]byte, oobSize)
	for {
		if err := ctx.Err(); err != nil {
			return Message{}, err
		}
		if err := r.conn.SetReadDeadline(time.Time{}); err != nil {
			return Message{}, r.readErr(err)
		}
		stop := context.AfterFunc(ctx, func() {
			r.conn.SetReadDeadline(time.Unix(1, 0))
		})
		n, oobn, flags, _, err := r.conn.ReadMsgUnix(buf, oob)
		stop()
		if err != nil {
			if ctx.Err() != nil {
				return Message{}, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // a late AfterFunc of an earlier call; ctx is alive
			}
			return Message{}, r.readErr(err)
		}
		m := Message{}
		parseOOB(oob[:oobn], &m)
		if flags&unix.MSG_TRUNC != 0 || n > MaxDatagram {
			r.dropped.Add(1)
			continue
		}
		fields, err := Parse(buf[:n])
		if err != nil {
			r.dropped.Add(1)
			continue
		}
		m.Fields = fields
		m.Raw = append([]byte(nil), buf[:n]...)
		return m, nil
	}
}

func (r *Receiver) readErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("receive on %s: %w", r.path, ErrClosed)
	}
	return fmt.Errorf("receive on %s: %w", r.path, err)
}

// parseOOB fills in m's credentials and closes any descriptors received.
func parseOOB(oob []byte, m *Message) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch msgs[i].Header.Type {
		case unix.SCM_CREDENTIALS:
			if c, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
				m.PID, m.UID, m.GID = int(c.Pid), int(c.Uid), int(c.Gid)
			}
		case unix.SCM_RIGHTS:
			if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
	}
}
