package listenfd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Syntax is the address syntax ParseSpec accepts, quoted in its errors.
const Syntax = "[NAME=]tcp|tcp4|tcp6|udp|udp4|udp6://HOST:PORT, [NAME=]HOST:PORT or [NAME=]:PORT (TCP), or [NAME=]unix|unixpacket|unixgram:///ABS/PATH or unix://@ABSTRACT, " +
	"options as ?backlog=N&reuseaddr=0|1&reuseport=0|1&v6only=0|1&mode=0660"

// MaxNameLen is the longest LISTEN_FDNAMES name systemd accepts (FDNAME_MAX).
const MaxNameLen = 255

// maxUnixPath is the longest unix socket path: sun_path is 108 bytes
// including the terminating NUL.
const maxUnixPath = 107

// Spec describes a socket to create. The zero value of each option means
// the default, except ReuseAddr: ParseSpec turns it on for TCP (like Go's
// net.Listen and most servers), so a Spec built by hand must set it.
type Spec struct {
	Name      string      // LISTEN_FDNAMES name; "" for none (systemd then says "unknown")
	Network   string      // tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixpacket or unixgram
	Address   string      // HOST:PORT for inet; /abs/path or @abstract for unix
	Backlog   int         // listen backlog for stream sockets; 0 means SOMAXCONN
	Mode      os.FileMode // permission bits of a unix socket file; 0 leaves the umask's
	ReuseAddr bool        // SO_REUSEADDR
	ReusePort bool        // SO_REUSEPORT
	V6Only    *bool       // IPV6_V6ONLY when set; nil means the network's default
}

// ValidName reports whether name can be used in LISTEN_FDNAMES: 1 to 255
// printable ASCII characters, no ':' (systemd's fdname_is_valid). It returns
// nil or an error saying what is wrong.
func ValidName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("name is %d bytes long, at most %d allowed", len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < ' ' || c >= 127 {
			return fmt.Errorf("name %q has a control or non-ASCII byte at %d", name, i)
		}
		if c == ':' {
			return fmt.Errorf("name %q contains ':', the LISTEN_FDNAMES separator", name)
		}
	}
	return nil
}

// ParseSpec parses an address like "web=tcp://:8080?backlog=512",
// "tcp6://[::1]:0?v6only=1", "unix:///run/app.sock?mode=0660" or
// "unix://@app". A bare "HOST:PORT" or ":PORT" (with an optional NAME=) is
// TCP, as everywhere else an address is written. It returns the Spec or an
// error naming what is wrong and quoting the valid syntax (Syntax).
func ParseSpec(s string) (Spec, error) {
	sp, err := parseSpec(s)
	if err != nil {
		return Spec{}, fmt.Errorf("bad address %q: %w (want %s)", s, err, Syntax)
	}
	return sp, nil
}

func parseSpec(s string) (Spec, error) {
	var sp Spec
	i := strings.Index(s, "://")
	if i < 0 {
		name, addr := "", s
		if j := strings.IndexByte(s, '='); j >= 0 {
			name, addr = s[:j+1], s[j+1:]
		}
		if _, _, err := net.SplitHostPort(addr); err == nil && !strings.ContainsAny(addr, "/?") {
			return parseSpec(name + "tcp://" + addr)
		}
		return sp, errors.New("no scheme:// (like tcp:// or unix://) and not HOST:PORT")
	}
	head, rest := s[:i], s[i+3:]
	if j := strings.LastIndexByte(head, '='); j >= 0 {
		sp.Name, head = head[:j], head[j+1:]
		if err := ValidName(sp.Name); err != nil {
			return sp, err
		}
		if strings.Contains(sp.Name, "=") {
			return sp, fmt.Errorf("name %q contains '='", sp.Name)
		}
	}
	sp.Network = head
	addr, query, hasQuery := strings.Cut(rest, "?")
	switch head {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		a, err := parseHostPort(head, addr)
		if err != nil {
			return sp, err
		}
		sp.Address = a
		sp.ReuseAddr = head[:3] == "tcp"
	case "unix", "unixpacket", "unixgram":
		if err := checkUnixAddr(addr); err != nil {
			return sp, err
		}
		sp.Address = addr
	case "":
		return sp, errors.New("empty scheme")
	default:
		return sp, fmt.Errorf("unknown scheme %q", head)
	}
	if hasQuery {
		if err := sp.parseOptions(query); err != nil {
			return sp, err
		}
	}
	return sp, nil
}

func parseHostPort(network, addr string) (string, error) {
	if addr == "" {
		return "", errors.New("no HOST:PORT after " + network + "://")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT (use [::1]:80 for IPv6, :80 for every address)", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if strings.ContainsAny(host, "/?#@ ") {
		return "", fmt.Errorf("host %q is not a host name or IP address", host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Zone() != "" && !ip.Is6():
			return "", fmt.Errorf("host %q has a zone but is not IPv6", host)
		case (network == "tcp4" || network == "udp4") && !ip.Unmap().Is4():
			return "", fmt.Errorf("%s needs an IPv4 address, not %s", network, host)
		case (network == "tcp6" || network == "udp6") && ip.Is4():
			return "", fmt.Errorf("%s needs an IPv6 address, not %s", network, host)
		}
	} else if strings.Contains(host, ":") {
		return "", fmt.Errorf("host %q is not a valid IPv6 address", host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(p, 10)), nil
}

func checkUnixAddr(addr string) error {
	switch {
	case addr == "":
		return errors.New("no path after unix://")
	case len(addr) > maxUnixPath:
		return fmt.Errorf("unix socket path is %d bytes long, at most %d fit in sun_path", len(addr), maxUnixPath)
	case strings.IndexByte(addr, 0) >= 0:
		return errors.New("unix socket path contains a NUL byte")
	case addr[0] == '@':
		if len(addr) == 1 {
			return errors.New("abstract socket name after @ is empty")
		}
	case addr[0] != '/':
		return fmt.Errorf("unix socket path %q is not absolute (write unix:///abs/path, three slashes)", addr)
	case addr[len(addr)-1] == '/':
		return fmt.Errorf("unix socket path %q names a directory", addr)
	}
	return nil
}

func parseBool(key, v string) (bool, error) {
	switch v {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("option %s=%q is not 0 or 1", key, v)
}

func (sp *Spec) parseOptions(query string) error {
	stream := sp.Network != "unixgram" && !strings.HasPrefix(sp.Network, "udp")
	unixNet := strings.HasPrefix(sp.Network, "unix")
	seen := map[string]bool{}
	for _, kv := range strings.Split(query, "&") {
		key, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return fmt.Errorf("option %q is not KEY=VALUE", kv)
		}
		if seen[key] {
			return fmt.Errorf("option %s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "backlog":
			if !stream {
				return fmt.Errorf("option backlog is for stream sockets, not %s", sp.Network)
			}
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 || n > 1<<20 {
				return fmt.Errorf("option backlog=%q is not a number from 1 to %d", v, 1<<20)
			}
			sp.Backlog = n
		case "mode":
			if !unixNet || sp.Address[0] == '@' {
				return errors.New("option mode is for unix socket files only")
			}
			m, perr := strconv.ParseUint(v, 8, 32)
			if perr != nil || m == 0 || m > 0o777 {
				return fmt.Errorf("option mode=%q is not octal permission bits like 0660", v)
			}
			sp.Mode = os.FileMode(m)
		case "reuseaddr", "reuseport":
			if unixNet {
				return fmt.Errorf("option %s is for TCP and UDP, not %s", key, sp.Network)
			}
			var b bool
			if b, err = parseBool(key, v); err != nil {
				return err
			}
			if key == "reuseaddr" {
				sp.ReuseAddr = b
			} else {
				sp.ReusePort = b
			}
		case "v6only":
			if sp.Network != "tcp" && sp.Network != "udp" && sp.Network != "tcp6" && sp.Network != "udp6" {
				return fmt.Errorf("option v6only is for tcp, tcp6, udp and udp6, not %s", sp.Network)
			}
			var b bool
			if b, err = parseBool(key, v); err != nil {
				return err
			}
			sp.V6Only = &b
		default:
			return fmt.Errorf("unknown option %q (known: backlog, mode, reuseaddr, reuseport, v6only)", key)
		}
	}
	return nil
}

// String returns the spec in the syntax ParseSpec reads, options in a fixed
// order and only when they differ from the default, so that
// ParseSpec(s.String()) returns s.
func (s Spec) String() string {
	var b strings.Builder
	if s.Name != "" {
		b.WriteString(s.Name)
		b.WriteByte('=')
	}
	b.WriteString(s.Network)
	b.WriteString("://")
	b.WriteString(s.Address)
	sep := byte('?')
	opt := func(k, v string) {
		b.WriteByte(sep)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		sep = '&'
	}
	bit := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	if s.Backlog != 0 {
		opt("backlog", strconv.Itoa(s.Backlog))
	}
	if s.Mode != 0 {
		opt("mode", fmt.Sprintf("%04o", uint32(s.Mode.Perm())))
	}
	if tcp := strings.HasPrefix(s.Network, "tcp"); s.ReuseAddr != tcp && !strings.HasPrefix(s.Network, "unix") {
		opt("reuseaddr", bit(s.ReuseAddr))
	}
	if s.ReusePort {
		opt("reuseport", "1")
	}
	if s.V6Only != nil {
		opt("v6only", bit(*s.V6Only))
	}
	return b.String()
}
