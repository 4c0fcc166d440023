package control

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func peerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", uerr)
	}
	return Cred{PID: int(uc.Pid), UID: int(uc.Uid), GID: int(uc.Gid)}, nil
}

// allowed reports whether a peer may talk to a server running as uid: root,
// the same uid, or a primary or supplementary group in gids.
func allowed(c Cred, uid int, gids []int) bool {
	if c.UID == 0 || c.UID == uid {
		return true
	}
	if len(gids) == 0 {
		return false
	}
	if slices.Contains(gids, c.GID) {
		return true
	}
	for _, g := range supplementaryGroups(c.PID) {
		if slices.Contains(gids, g) {
			return true
		}
	}
	return false
}

// supplementaryGroups reads the Groups: line of /proc/PID/status. The peer
// could exit and its pid be reused in between; that only matters for a
// peer that already passed the uid checks of the socket file.
func supplementaryGroups(pid int) []int {
	if pid <= 0 {
		return nil
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var gs []int
		for _, s := range strings.Fields(rest) {
			if g, err := strconv.Atoi(s); err == nil {
				gs = append(gs, g)
			}
		}
		return gs
	}
	return nil
}

// hungUp reports whether the peer of c has closed its end entirely (not
// just shut down writing): Linux raises POLLHUP on a unix stream socket
// only when both directions are shut.
func hungUp(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	hup := true
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n == 1 {
			hup = fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return hup
}
