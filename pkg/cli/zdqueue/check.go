package zdqueue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/listenfd"
	"github.com/zdtools/zd/pkg/statedir"
)

// check validates what parseOptions could not without touching the
// system: the addresses, the state dir (created if missing, as a run
// would) and the worker table's folder. It opens no socket, so it can run
// next to the zd-queue it is checking for. It returns the one-line summary
// printed on success.
func check(o *options, getenv func(string) string) (string, error) {
	var listen []string
	for _, a := range o.listen {
		for _, a := range cmdkit.SplitList(a) {
			s, err := listenSpec(a, "tcp")
			if err != nil {
				return "", err
			}
			listen = append(listen, s.String())
		}
	}
	if o.listenH3 != "" {
		s, err := listenSpec(o.listenH3, "udp")
		if err != nil {
			return "", err
		}
		listen = append(listen, s.String())
	}
	if n := getenv("LISTEN_FDS"); n != "" {
		listen = append(listen, "LISTEN_FDS="+n)
	}
	if len(listen) == 0 {
		return "", cmdkit.UsageError("add --listen :8080 (or start zd-queue with LISTEN_FDS from zd-run, zd-handoff or systemd)", "nothing to listen on")
	}
	if o.admin != "" {
		if err := checkAdmin(o.admin); err != nil {
			return "", err
		}
	}
	if err := statedir.Ensure(o.stateDir); err != nil {
		return "", cmdkit.Wrap(err, cmdkit.ExitUsage, "choose another --state-dir, or fix its owner and mode (0700)")
	}
	backends := fmt.Sprintf("%d static", len(o.cfg.Backends))
	if o.backendsFrom != "" {
		table := filepath.Join(o.backendsFrom, statedir.WorkersFile)
		st, err := os.Stat(o.backendsFrom)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", cmdkit.UsageError("start zd-run with the same --name or --state-dir first, or point --backends-from at zd-run's state dir",
				"--backends-from %s: no such folder, so no worker table %s", o.backendsFrom, table)
		case err != nil:
			return "", cmdkit.UsageError("fix the folder's permissions", "--backends-from %s: %v", o.backendsFrom, errors.Unwrap(err))
		case !st.IsDir():
			return "", cmdkit.UsageError("name zd-run's state dir, not a file in it", "--backends-from %s is not a folder", o.backendsFrom)
		}
		backends += ", table " + table
		if _, err := os.Stat(table); err != nil {
			backends += " (not written yet)"
		}
	}
	access := "off"
	if o.accessLog != "" {
		al, err := openAccessLog(o, cmdkit.IO{Stderr: io.Discard})
		if err != nil {
			return "", err
		}
		al.Close()
		access = o.accessLog + " (" + o.accessFormat + ")"
	}
	tlsMode := "off"
	if o.cfg.TLS != nil {
		tlsMode = "on"
	}
	return fmt.Sprintf("zd-queue %s: configuration ok: listen %s; backends %s; admin %s; TLS %s; access log %s; state dir %s",
		cmdkit.Version(), strings.Join(listen, ","), backends, orNone(o.admin), tlsMode, access, o.stateDir), nil
}

// listenSpec parses a --listen or --listen-h3 address: HOST:PORT, :PORT or
// a listenfd spec (tcp://..., udp://..., unix:///...).
func listenSpec(addr, network string) (listenfd.Spec, error) {
	spec := addr
	if !strings.Contains(addr, "://") {
		spec = network + "://" + hostPort(addr)
	}
	s, err := listenfd.ParseSpec(spec)
	if err != nil {
		return s, cmdkit.UsageError("use :8080, 127.0.0.1:8080 or "+listenfd.Syntax, "listen %q: %v", addr, err)
	}
	return s, nil
}

// checkAdmin validates an --admin address: unix:///abs/path, HOST:PORT or
// tcp://HOST:PORT.
func checkAdmin(a string) error {
	const hint = "use --admin 127.0.0.1:9090, tcp://127.0.0.1:9090 or unix:///run/zd/NAME/admin.sock"
	if path, ok := strings.CutPrefix(a, "unix://"); ok {
		if !filepath.IsAbs(path) {
			return cmdkit.UsageError(hint, "--admin %q: the socket path is not absolute (write unix:///abs/path)", a)
		}
		if len(path) > 107 {
			return cmdkit.UsageError(hint, "--admin %q: the socket path is longer than 107 bytes", a)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(hostPort(strings.TrimPrefix(a, "tcp://")))
	if err != nil {
		return cmdkit.UsageError(hint, "--admin %q: not HOST:PORT", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return cmdkit.UsageError(hint, "--admin %q: port %q is not a number from 0 to 65535", a, port)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
