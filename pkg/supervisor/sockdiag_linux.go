package supervisor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Counting active connections through the kernel's sock_diag netlink
// interface (NETLINK_SOCK_DIAG) instead of /proc/net/tcp: the kernel is
// asked for ESTABLISHED sockets only, so TIME_WAIT entries (thousands under
// Connection: close load) are skipped in the kernel rather than formatted as
// text and parsed, and a status request stays well under a millisecond.

// Layouts of <linux/inet_diag.h> and <linux/unix_diag.h> (not in x/sys).
const (
	sizeofInetDiagReqV2 = 56 // family, protocol, ext, pad, states u32, inet_diag_sockid (48)
	sizeofInetDiagMsg   = 72 // family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode
	sizeofUnixDiagReq   = 24 // family, protocol, pad u16, states u32, ino u32, show u32, cookie [2]u32
	sizeofUnixDiagMsg   = 16 // family, type, state, pad, ino u32, cookie [2]u32

	tcpEstablished      = 1       // TCP_ESTABLISHED, also the state of a connected unix socket
	inetDiagReqBytecode = 1       // INET_DIAG_REQ_BYTECODE attribute
	inetDiagBcJmp       = 1       // INET_DIAG_BC_JMP
	inetDiagBcSEq       = 11      // INET_DIAG_BC_S_EQ
	udiagShowName       = 0x1     // UDIAG_SHOW_NAME
	unixDiagName        = 0       // UNIX_DIAG_NAME attribute
	diagMaxReplies      = 1 << 16 // bound on the netlink datagrams read for one dump
)

// listenKeys are what identifies connections accepted on the listeners:
// TCP ports and addresses (an accepted socket has the listener's port as
// its local port, and its address unless the listener is bound to a
// wildcard) and unix socket names (an accepted unix socket shares its
// listener's name). The port alone is not enough: another service may
// listen on the same port at another address (::1 beside 127.0.0.1).
type listenKeys struct {
	tcpPorts  map[uint16]bool
	tcpAddrs  map[uint16][]netip.Addr // per port, the listeners' addresses (unmapped)
	unixNames map[string]bool
}

func (k *listenKeys) addTCP(ip []byte, port int) {
	a, _ := netip.AddrFromSlice(ip)
	k.tcpPorts[uint16(port)] = true
	k.tcpAddrs[uint16(port)] = append(k.tcpAddrs[uint16(port)], a.Unmap())
}

// tcpMatch says whether a connection with this local address and port was
// accepted on one of the listeners.
func (k *listenKeys) tcpMatch(local netip.Addr, port uint16) bool {
	local = local.Unmap()
	for _, a := range k.tcpAddrs[port] {
		if a.IsUnspecified() || a == local {
			return true
		}
	}
	return false
}

// keysOf reads the listeners' own addresses (getsockname, through
// SyscallConn so that the sockets' blocking mode is left alone).
func keysOf(ls []Listener) listenKeys {
	k := listenKeys{tcpPorts: map[uint16]bool{}, tcpAddrs: map[uint16][]netip.Addr{}, unixNames: map[string]bool{}}
	for _, l := range ls {
		if l.File == nil {
			continue
		}
		rc, err := l.File.SyscallConn()
		if err != nil {
			continue
		}
		var sa unix.Sockaddr
		var typ int
		_ = rc.Control(func(fd uintptr) {
			sa, err = unix.Getsockname(int(fd))
			if err == nil {
				typ, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			}
		})
		if err != nil {
			continue
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			if typ == unix.SOCK_STREAM {
				k.addTCP(a.Addr[:], a.Port)
			}
		case *unix.SockaddrInet6:
			if typ == unix.SOCK_STREAM {
				k.addTCP(a.Addr[:], a.Port)
			}
		case *unix.SockaddrUnix:
			if a.Name != "" {
				k.unixNames[a.Name] = true
			}
		}
	}
	return k
}

// countConnections counts the ESTABLISHED TCP and connected unix stream
// sockets accepted on the listeners k describes.
func countConnections(k listenKeys) (int, error) {
	n := 0
	if len(k.tcpPorts) > 0 {
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			c, err := countInet(family, k)
			if err != nil {
				return 0, err
			}
			n += c
		}
	}
	if len(k.unixNames) > 0 {
		c, err := countUnix(k.unixNames)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

func countInet(family uint8, k listenKeys) (int, error) {
	n := 0
	each := func(msg []byte) {
		if len(msg) < sizeofInetDiagMsg {
			return
		}
		// inet_diag_sockid after 4 bytes: sport, dport (network order),
		// src[16], dst[16]; an IPv4 address is src's first 4 bytes.
		src := msg[8:24]
		if msg[0] == unix.AF_INET {
			src = src[:4]
		}
		local, _ := netip.AddrFromSlice(src)
		if k.tcpMatch(local, binary.BigEndian.Uint16(msg[4:6])) {
			n++
		}
	}
	err := sockDiagDump(inetRequest(family, portFilter(k.tcpPorts)), each)
	if errors.Is(err, unix.EINVAL) {
		// A kernel that refuses the filter: filter here only.
		n = 0
		err = sockDiagDump(inetRequest(family, nil), each)
	}
	return n, err
}

// inetRequest is an inet_diag_req_v2 for ESTABLISHED TCP sockets of
// family, with the bytecode filter bc attached when there is one.
func inetRequest(family uint8, bc []byte) []byte {
	req := make([]byte, sizeofInetDiagReqV2, sizeofInetDiagReqV2+4+len(bc))
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpEstablished)
	if len(bc) > 0 {
		req = binary.NativeEndian.AppendUint16(req, uint16(4+len(bc)))
		req = binary.NativeEndian.AppendUint16(req, inetDiagReqBytecode)
		req = append(req, bc...)
	}
	return req
}

// portFilter compiles "local port is one of ports" to inet_diag bytecode,
// so the kernel sends only the listeners' connections (not every
// ESTABLISHED socket of the machine). Per port: S_EQ port (yes: next op,
// no: skip the JMP to the next port's test), then JMP to the end (accept).
// The last test's "no" jumps 4 bytes past the end, which rejects.
func portFilter(ports map[uint16]bool) []byte {
	list := make([]uint16, 0, len(ports))
	for p := range ports {
		list = append(list, p)
	}
	slices.Sort(list)
	const test, jmp = 8, 4 // bytes: an S_EQ op with its port op; a JMP
	total := len(list)*(test+jmp) - jmp
	op := func(b []byte, code uint8, yes uint8, no uint16) []byte {
		b = append(b, code, yes)
		return binary.NativeEndian.AppendUint16(b, no)
	}
	var bc []byte
	for i, p := range list {
		if i == len(list)-1 {
			bc = op(bc, inetDiagBcSEq, test, test+4)
			bc = op(bc, 0, 0, p)
			break
		}
		bc = op(bc, inetDiagBcSEq, test, test+jmp)
		bc = op(bc, 0, 0, p)
		bc = op(bc, inetDiagBcJmp, jmp, uint16(total-len(bc)))
	}
	return bc
}

func countUnix(names map[string]bool) (int, error) {
	req := make([]byte, sizeofUnixDiagReq)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpEstablished)
	binary.NativeEndian.PutUint32(req[12:], udiagShowName)
	n := 0
	err := sockDiagDump(req, func(msg []byte) {
		if name, ok := unixDiagStreamName(msg); ok && names[name] {
			n++
		}
	})
	return n, err
}

// unixDiagStreamName decodes one unix_diag_msg: the socket's name (an
// abstract one spelt "@name", as Go's SockaddrUnix does) when it is a
// stream or seqpacket socket with a UNIX_DIAG_NAME attribute.
func unixDiagStreamName(msg []byte) (string, bool) {
	if len(msg) < sizeofUnixDiagMsg || msg[1] == unix.SOCK_DGRAM {
		return "", false
	}
	for attrs := msg[sizeofUnixDiagMsg:]; len(attrs) >= 4; {
		alen := int(binary.NativeEndian.Uint16(attrs[0:2]))
		atyp := binary.NativeEndian.Uint16(attrs[2:4])
		if alen < 4 || alen > len(attrs) {
			return "", false
		}
		if atyp == unixDiagName {
			name := attrs[4:alen]
			if len(name) > 0 && name[0] == 0 {
				return "@" + string(name[1:]), true
			}
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i] // a path name comes with its terminating NUL
			}
			return string(name), true
		}
		attrs = attrs[min((alen+3)&^3, len(attrs)):]
	}
	return "", false
}

// sockDiagDump sends one SOCK_DIAG_BY_FAMILY dump request and calls each
// for the payload of every reply message until NLMSG_DONE (bounded: a read
// timeout and a cap on datagrams).
func sockDiagDump(req []byte, each func([]byte)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("sock_diag timeout: %w", err)
	}
	msg := make([]byte, unix.NLMSG_HDRLEN+len(req))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:12], 1)
	copy(msg[unix.NLMSG_HDRLEN:], req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 64<<10)
	for range diagMaxReplies {
		nr, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag reply: %w", err)
		}
		done, err := walkNetlink(buf[:nr], each)
		if done || err != nil {
			return err
		}
	}
	return fmt.Errorf("sock_diag: no end of dump after %d replies", diagMaxReplies)
}

// walkNetlink calls each for the payload of every netlink message in one
// datagram b. done is true at NLMSG_DONE or NLMSG_ERROR (err is the error
// the kernel reported, if any); a malformed length is an error.
func walkNetlink(b []byte, each func([]byte)) (done bool, err error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		mlen := int(binary.NativeEndian.Uint32(b[0:4]))
		mtyp := binary.NativeEndian.Uint16(b[4:6])
		if mlen < unix.NLMSG_HDRLEN || mlen > len(b) {
			return true, fmt.Errorf("sock_diag reply: bad message length %d", mlen)
		}
		data := b[unix.NLMSG_HDRLEN:mlen]
		switch mtyp {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(data[:4])); e != 0 {
					return true, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
				}
			}
			return true, nil
		}
		each(data)
		b = b[min((mlen+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return false, nil
}
