package listenfd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen creates the socket: socket, options, bind and, for stream
// sockets, listen with the backlog (SOMAXCONN when 0). A unix socket file
// that is left over (nothing accepts on it any more) is removed first; one
// that is live, or a file that is not a socket, is an error. The file gets
// Mode before anyone can connect.
//
// It returns an *os.File named s.Name, close-on-exec and in blocking mode
// (the mode every program expects of an inherited socket), or an error that
// names the address.
func (s Spec) Listen() (*os.File, error) {
	fd, err := s.listen()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.String(), err)
	}
	return os.NewFile(uintptr(fd), s.Name), nil
}

func (s Spec) sockType() int {
	switch {
	case s.Network == "unixpacket":
		return unix.SOCK_SEQPACKET
	case s.Network == "unixgram", strings.HasPrefix(s.Network, "udp"):
		return unix.SOCK_DGRAM
	}
	return unix.SOCK_STREAM
}

func (s Spec) listen() (int, error) {
	typ := s.sockType()
	if strings.HasPrefix(s.Network, "unix") {
		return s.listenUnix(typ)
	}
	family, sa, err := s.inetAddr()
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) && family == unix.AF_INET6 && s.Network[3:] == "" && isWildcard(sa) {
		// No IPv6 on this host: a wildcard tcp:// or udp:// still works on IPv4.
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: sa.(*unix.SockaddrInet6).Port}
		fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := s.inetOptions(fd, family); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, s.backlog()); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("listen", err)
		}
	}
	return fd, nil
}

func isWildcard(sa unix.Sockaddr) bool {
	s6, ok := sa.(*unix.SockaddrInet6)
	return ok && s6.Addr == [16]byte{}
}

func (s Spec) backlog() int {
	if s.Backlog > 0 {
		return s.Backlog
	}
	return unix.SOMAXCONN
}

// inetAddr resolves the address. A wildcard host on tcp/udp gives a
// dual-stack IPv6 socket, as Go's net package does.
func (s Spec) inetAddr() (int, unix.Sockaddr, error) {
	host, port, err := net.SplitHostPort(s.Address)
	if err != nil {
		return 0, nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp"+s.Network[3:], net.JoinHostPort(host, port))
	if err != nil {
		return 0, nil, fmt.Errorf("resolve %s: %w", s.Address, err)
	}
	v := s.Network[3:] // "", "4" or "6"
	ip4 := addr.IP.To4()
	switch {
	case v == "4" || (v == "" && ip4 != nil && addr.IP != nil):
		sa := &unix.SockaddrInet4{Port: addr.Port}
		if ip4 != nil {
			copy(sa.Addr[:], ip4)
		}
		return unix.AF_INET, sa, nil
	}
	sa := &unix.SockaddrInet6{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To16())
	if addr.Zone != "" {
		ifi, err := net.InterfaceByName(addr.Zone)
		if err != nil {
			return 0, nil, fmt.Errorf("zone of %s: %w", s.Address, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return unix.AF_INET6, sa, nil
}

func (s Spec) inetOptions(fd, family int) error {
	set := func(level, opt int, on bool, name string) error {
		v := 0
		if on {
			v = 1
		}
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	if s.ReuseAddr {
		if err := set(unix.SOL_SOCKET, unix.SO_REUSEADDR, true, "SO_REUSEADDR"); err != nil {
			return err
		}
	}
	if s.ReusePort {
		if err := set(unix.SOL_SOCKET, unix.SO_REUSEPORT, true, "SO_REUSEPORT"); err != nil {
			return err
		}
	}
	if family == unix.AF_INET6 {
		v6only := s.Network[3:] == "6"
		if s.V6Only != nil {
			v6only = *s.V6Only
		}
		if err := set(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only, "IPV6_V6ONLY"); err != nil {
			return err
		}
	}
	return nil
}

func (s Spec) listenUnix(typ int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	sa := &unix.SockaddrUnix{Name: s.Address}
	err = unix.Bind(fd, sa)
	if errors.Is(err, unix.EADDRINUSE) && s.Address[0] == '/' {
		if rerr := removeStale(s.Address, typ); rerr != nil {
			unix.Close(fd)
			return -1, rerr
		}
		err = unix.Bind(fd, sa)
	}
	if err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if s.Mode != 0 && s.Address[0] == '/' {
		if err := os.Chmod(s.Address, s.Mode.Perm()); err != nil {
			unix.Close(fd)
			os.Remove(s.Address)
			return -1, err
		}
	}
	if typ != unix.SOCK_DGRAM {
		if err := unix.Listen(fd, s.backlog()); err != nil {
			unix.Close(fd)
			os.Remove(s.Address)
			return -1, os.NewSyscallError("listen", err)
		}
	}
	return fd, nil
}

// removeStale removes path if it is a socket nobody accepts on any more.
func removeStale(path string, typ int) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	if err == nil || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINPROGRESS) {
		return fmt.Errorf("%s: %w: another process is listening on it", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// ListenAll creates every spec's socket in order. It returns them all, or
// closes the ones already created and returns the first error.
func ListenAll(specs []Spec) ([]*os.File, error) {
	files := make([]*os.File, 0, len(specs))
	for _, s := range specs {
		f, err := s.Listen()
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
