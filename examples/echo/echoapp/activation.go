package echoapp

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listeners returns the sockets handed over by the systemd socket-activation
// protocol: LISTEN_FDS sockets starting at fd 3, valid only when LISTEN_PID
// is our own pid. It returns nil, nil when nothing was handed over. It is
// written here, without any zd package, to show that an app needs none.
func listeners(getenv func(string) string) ([]net.Listener, error) {
	nfds := getenv("LISTEN_FDS")
	if nfds == "" {
		return nil, nil
	}
	if pid, err := strconv.Atoi(getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil, fmt.Errorf("LISTEN_PID=%q is not my pid %d: the sockets are meant for another process",
			getenv("LISTEN_PID"), os.Getpid())
	}
	n, err := strconv.Atoi(nfds)
	if err != nil || n < 1 || n > 1000 {
		return nil, fmt.Errorf("bad LISTEN_FDS=%q", nfds)
	}
	names := strings.Split(getenv("LISTEN_FDNAMES"), ":")
	var lns []net.Listener
	for i := range n {
		fd := 3 + i
		syscall.CloseOnExec(fd)
		name := "fd" + strconv.Itoa(fd)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f)
		f.Close() // FileListener dup'ed it
		if err != nil {
			return nil, fmt.Errorf("LISTEN_FDS fd %d (%s): %w", fd, name, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// notifier sends sd_notify datagrams to NOTIFY_SOCKET; a nil notifier (no
// socket in the environment) drops them.
type notifier struct{ conn *net.UnixConn }

func newNotifier(getenv func(string) string) (*notifier, error) {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}, nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: %w", getenv("NOTIFY_SOCKET"), err)
	}
	return &notifier{conn: c}, nil
}

// Send sends one datagram of newline-separated KEY=VALUE lines.
func (n *notifier) Send(state string) {
	if n.conn != nil {
		_, _ = n.conn.Write([]byte(state))
	}
}
