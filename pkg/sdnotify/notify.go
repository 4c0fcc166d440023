package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Notify sends state (e.g. "READY=1" or "STATUS=draining\nSTOPPING=1") as
// one datagram to the socket named by getenv("NOTIFY_SOCKET"), a filesystem
// path or "@name" for an abstract socket. It returns (false, nil) when
// NOTIFY_SOCKET is unset or empty (not supervised: nothing to do), (true,
// nil) when the datagram was sent, and (false, err) when sending failed or
// the address is of a kind not supported (e.g. vsock). getenv is usually
// os.Getenv.
func Notify(getenv func(string) string, state string) (sent bool, err error) {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if err := NotifyTo(path, state); err != nil {
		return false, err
	}
	return true, nil
}

// NotifyTo sends state as one datagram to the unix datagram socket at path
// ("@name" for an abstract socket). It does not check state's syntax.
func NotifyTo(path, state string) error {
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return fmt.Errorf("notify %s: unsupported NOTIFY_SOCKET address (want an absolute path or @abstract)", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", path, err)
	}
	n, err := conn.Write([]byte(state))
	cerr := conn.Close()
	switch {
	case err != nil:
		return fmt.Errorf("notify %s: %w", path, err)
	case n != len(state):
		return fmt.Errorf("notify %s: short write (%d of %d bytes)", path, n, len(state))
	case cerr != nil && !errors.Is(cerr, net.ErrClosed):
		return fmt.Errorf("notify %s: %w", path, cerr)
	}
	return nil
}
