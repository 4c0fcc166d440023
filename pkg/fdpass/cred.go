package fdpass

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// Cred identifies the process at the other end of a unix socket, as the
// kernel recorded it when the connection was made.
type Cred struct {
	PID, UID, GID int
}

// ErrRefused is wrapped by CheckPeer's refusals.
var ErrRefused = errors.New("peer refused")

// PeerCred returns the credentials of c's peer (SO_PEERCRED).
func PeerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		uc, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if gerr != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", gerr)
	}
	return Cred{PID: int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid)}, nil
}

// CheckPeer allows a peer running as this process's uid, as root, or with
// a gid in allowGIDs. It returns nil, or an error wrapping ErrRefused that
// says who was refused and how to allow it.
func CheckPeer(c Cred, allowGIDs []int) error {
	me := os.Getuid()
	if c.UID == me || c.UID == 0 || slices.Contains(allowGIDs, c.GID) {
		return nil
	}
	return fmt.Errorf("%w: pid %d runs as uid %d gid %d, not as uid %d or root, and gid %d is not allowed "+
		"(run it as uid %d, or allow its group with --allow-gid %d)", ErrRefused, c.PID, c.UID, c.GID, me, c.GID, me, c.GID)
}
