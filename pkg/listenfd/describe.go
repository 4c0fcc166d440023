package listenfd

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Info describes a socket descriptor.
type Info struct {
	Family    string // "inet", "inet6" or "unix"
	Type      string // "stream", "dgram" or "seqpacket"
	Local     string // IP:PORT ([IP]:PORT for IPv6), /path, @abstract, or "" if unbound
	Listening bool   // a stream socket on which listen was called
}

// Network returns the Go network name of the socket: tcp, tcp6, udp, udp6,
// unix, unixgram or unixpacket ("" for an unknown combination).
func (i Info) Network() string {
	switch i.Family + "/" + i.Type {
	case "inet/stream":
		return "tcp"
	case "inet6/stream":
		return "tcp6"
	case "inet/dgram":
		return "udp"
	case "inet6/dgram":
		return "udp6"
	case "unix/stream":
		return "unix"
	case "unix/dgram":
		return "unixgram"
	case "unix/seqpacket":
		return "unixpacket"
	}
	return ""
}

// Describe returns what kind of socket f is, without changing it (no call
// to Fd, so its blocking mode stays). It returns an error wrapping
// unix.ENOTSOCK when f is not a socket.
func Describe(f *os.File) (Info, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return Info{}, fmt.Errorf("describe %s: %w", f.Name(), err)
	}
	var info Info
	var derr error
	if err := rc.Control(func(fd uintptr) { info, derr = DescribeFD(int(fd)) }); err != nil {
		return Info{}, fmt.Errorf("describe %s: %w", f.Name(), err)
	}
	return info, derr
}

// DescribeFD is Describe for a raw descriptor.
func DescribeFD(fd int) (Info, error) {
	var info Info
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return info, fmt.Errorf("describe fd %d: %w", fd, err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return info, fmt.Errorf("describe fd %d: %w", fd, err)
	}
	switch dom {
	case unix.AF_INET:
		info.Family = "inet"
	case unix.AF_INET6:
		info.Family = "inet6"
	case unix.AF_UNIX:
		info.Family = "unix"
	default:
		info.Family = "af" + strconv.Itoa(dom)
	}
	switch typ {
	case unix.SOCK_STREAM:
		info.Type = "stream"
	case unix.SOCK_DGRAM:
		info.Type = "dgram"
	case unix.SOCK_SEQPACKET:
		info.Type = "seqpacket"
	default:
		info.Type = "type" + strconv.Itoa(typ)
	}
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil {
		info.Listening = acc == 1
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return info, fmt.Errorf("describe fd %d: %w", fd, err)
	}
	info.Local = SockaddrString(sa)
	return info, nil
}

// SockaddrString formats a socket address: IP:PORT, [IP%zone]:PORT,
// /path, @abstract, or "" for an unbound unix socket.
func SockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(a.ZoneId), 10))
		}
		return netip.AddrPortFrom(ip, uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		if a.Name == "@" || a.Name == "\x00" {
			return "" // unbound: x/sys reports the empty path as abstract
		}
		if len(a.Name) > 0 && a.Name[0] == 0 {
			return "@" + a.Name[1:]
		}
		return a.Name
	}
	return ""
}
