package zdqueue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/listenfd"
	"github.com/zdtools/zd/pkg/proxy"
	"github.com/zdtools/zd/pkg/statedir"
)

func run(ctx context.Context, o *options, io cmdkit.IO) error {
	log, err := cmdkit.NewLogger(io.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	log = log.With("prog", "zd-queue", "name", o.name)
	o.cfg.Logger = log
	if io.Getenv("GOGC") == "" {
		// A proxy allocates a little per request and keeps little: collecting
		// less often costs ~12% less CPU per request (bench/proxy-compare.sh)
		// for a heap of a few times the live set, which the buffer bounds.
		debug.SetGCPercent(300)
	}
	var memFloor int64
	if io.Getenv("GOMEMLIMIT") == "" && o.cfg.Limits.MaxBytes > 0 {
		// Keep the garbage collector's slack from growing with the buffer:
		// near this soft limit it collects harder, so memory stays about
		// the buffer (held plus being read) plus a fixed overhead. It
		// follows what zd-queue uses once that is more (memlimit.go).
		memFloor = 2*o.cfg.Limits.MaxBytes + 48<<20
		debug.SetMemoryLimit(memFloor)
	}

	// Catch signals before the first socket exists: a TERM that arrives
	// while zd-queue starts (a supervisor or a script that saw the socket)
	// is a graceful stop once serving begins, not the default death.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigc)

	ls, err := openListeners(o)
	if err != nil {
		return err
	}
	closeAll := func() {
		for _, l := range ls.TCP {
			l.Close()
		}
		for _, pc := range ls.UDP {
			pc.Close()
		}
	}
	if err := statedir.Ensure(o.stateDir); err != nil {
		closeAll()
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "choose another --state-dir, or fix its owner and mode (0700)")
	}
	sockPath := filepath.Join(o.stateDir, statedir.QueueSock)
	csrv, err := control.Listen(sockPath, control.Options{AllowGIDs: o.allowGIDs, Logger: log})
	if err != nil {
		closeAll()
		return cmdkit.Wrap(err, cmdkit.ExitFailure,
			"is another zd-queue running with this --name/--state-dir? `zdctl --name "+o.name+" queue status` tells")
	}
	var adminLn net.Listener
	if o.admin != "" {
		if path, ok := strings.CutPrefix(o.admin, "unix://"); ok {
			os.Remove(path) // a socket file left by a previous run; Listen fails on it
			adminLn, err = net.Listen("unix", path)
		} else {
			adminLn, err = net.Listen("tcp", hostPort(strings.TrimPrefix(o.admin, "tcp://")))
		}
		if err != nil {
			closeAll()
			csrv.Close()
			return cmdkit.Wrap(fmt.Errorf("admin listener %s: %w", o.admin, err), cmdkit.ExitFailure, "pick a free --admin address")
		}
	}

	if o.accessLog != "" {
		al, err := openAccessLog(o, io)
		if err != nil {
			closeAll()
			csrv.Close()
			return err
		}
		defer al.Close() // after the proxy: its last requests are logged too
		o.cfg.AccessLog = al
	}
	p, err := proxy.New(o.cfg)
	if err != nil {
		closeAll()
		csrv.Close()
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "check --backend")
	}
	defer p.Close()
	pidPath := filepath.Join(o.stateDir, statedir.QueuePID)
	if err := statedir.WritePID(pidPath, os.Getpid()); err != nil {
		log.Warn("cannot write pid file", "path", pidPath, "err", err)
	}
	defer os.Remove(pidPath)

	if o.backendsFrom != "" {
		p.ExpectTable(filepath.Join(o.backendsFrom, statedir.WorkersFile)) // status explains a missing table from the start
	}

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	bg, bgCancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := csrv.Serve(bg, p.Handle); err != nil && !errors.Is(err, control.ErrServerClosed) {
			log.Error("control socket stopped", "err", err)
		}
	}()
	if adminLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.ServeAdmin(bg, adminLn); err != nil {
				log.Error("admin listener stopped", "err", err)
			}
		}()
	}
	if o.backendsFrom != "" {
		path := filepath.Join(o.backendsFrom, statedir.WorkersFile)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.WatchTable(bg, path); err != nil {
				log.Error("worker table watch stopped", "path", path, "err", err)
			}
		}()
	}
	if memFloor > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); governMemory(bg, memFloor, time.Second) }()
	}
	defer func() {
		bgCancel()
		csrv.Close()
		wg.Wait()
	}()

	// TERM/INT: graceful stop; a second one, or QUIT, stops at once.
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		for {
			select {
			case <-bg.Done():
				return
			case s := <-sigc:
				switch s {
				case syscall.SIGHUP:
					log.Info("SIGHUP: nothing to reload; the worker table is watched continuously")
					continue
				case syscall.SIGUSR1:
					if al := o.cfg.AccessLog; al != nil {
						if err := al.Reopen(); err != nil {
							log.Error("SIGUSR1: cannot reopen the access log; still writing to the old file", "path", o.accessLog, "err", err)
						} else {
							log.Info("SIGUSR1: access log reopened", "path", o.accessLog)
						}
					}
					continue
				case syscall.SIGQUIT:
					log.Info("SIGQUIT: stopping now")
					p.ForceStop()
					stop()
					continue
				}
				n++
				if n == 1 {
					log.Info("stopping gracefully", "signal", s.String(), "grace", o.cfg.ShutdownGrace)
					stop()
				} else {
					log.Warn("second signal: stopping now")
					p.ForceStop()
				}
			}
		}
	}()

	log.Info("serving", "listen", addrs(ls), "access_log", o.accessLog, "backends", len(o.cfg.Backends), "backends_from", o.backendsFrom,
		"admin", o.admin, "control", sockPath)
	start := time.Now()
	err = p.Serve(sctx, ls)
	log.Info("stopped", "after", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	return nil
}

// openListeners creates --listen and --listen-h3 sockets, or takes the ones
// inherited through LISTEN_FDS (TCP and unix stream sockets for HTTP/1.1 and
// HTTP/2, UDP ones for HTTP/3).
func openListeners(o *options) (proxy.Listeners, error) {
	var ls proxy.Listeners
	files, err := listenfd.Inherited(true)
	if err != nil {
		return ls, cmdkit.Wrap(err, cmdkit.ExitUsage, "LISTEN_FDS/LISTEN_PID are set but wrong; unset them or fix the parent")
	}
	for _, f := range files {
		info, err := listenfd.Describe(f)
		if err != nil {
			return ls, cmdkit.Wrap(fmt.Errorf("inherited fd %s: %w", f.Name(), err), cmdkit.ExitUsage, "pass listening TCP, unix or UDP sockets")
		}
		if strings.HasPrefix(info.Network(), "udp") {
			pc, err := net.FilePacketConn(f)
			if err != nil {
				return ls, cmdkit.Wrap(err, cmdkit.ExitUsage, "pass a bound UDP socket for HTTP/3")
			}
			if o.cfg.TLS == nil {
				return ls, cmdkit.UsageError("add --tls-cert and --tls-key", "inherited UDP socket %s needs TLS for HTTP/3", f.Name())
			}
			ls.UDP = append(ls.UDP, pc)
		} else {
			l, err := net.FileListener(f)
			if err != nil {
				return ls, cmdkit.Wrap(err, cmdkit.ExitUsage, "pass a listening stream socket")
			}
			ls.TCP = append(ls.TCP, l)
		}
		f.Close()
	}
	for _, a := range o.listen {
		for _, a := range cmdkit.SplitList(a) {
			l, err := listen(a, "tcp")
			if err != nil {
				return ls, err
			}
			ls.TCP = append(ls.TCP, l.(net.Listener))
		}
	}
	if o.listenH3 != "" {
		pc, err := listen(o.listenH3, "udp")
		if err != nil {
			return ls, err
		}
		ls.UDP = append(ls.UDP, pc.(net.PacketConn))
	}
	if len(ls.TCP) == 0 && len(ls.UDP) == 0 {
		return ls, cmdkit.UsageError("add --listen :8080 (or start zd-queue with LISTEN_FDS from zd-run, zd-handoff or systemd)", "nothing to listen on")
	}
	return ls, nil
}

// listen opens one address: HOST:PORT, :PORT or a listenfd spec
// (tcp://..., udp://..., unix:///...).
func listen(addr, network string) (any, error) {
	s, err := listenSpec(addr, network)
	if err != nil {
		return nil, err
	}
	f, err := s.Listen()
	if err != nil {
		return nil, cmdkit.Wrap(fmt.Errorf("listen on %s: %w", addr, err), cmdkit.ExitFailure, "is the address in use or not allowed? pick another")
	}
	defer f.Close()
	if strings.HasPrefix(s.Network, "udp") {
		return net.FilePacketConn(f)
	}
	return net.FileListener(f)
}

// hostPort turns ":8080" and "8080" into listenable addresses.
func hostPort(a string) string {
	if !strings.Contains(a, ":") {
		return ":" + a
	}
	return a
}

func addrs(ls proxy.Listeners) string {
	var out []string
	for _, l := range ls.TCP {
		out = append(out, l.Addr().String())
	}
	for _, pc := range ls.UDP {
		out = append(out, "udp/"+pc.LocalAddr().String())
	}
	return strings.Join(out, ",")
}

// openAccessLog opens --access-log (stderr, or a file to append to).
func openAccessLog(o *options, io cmdkit.IO) (*proxy.AccessLog, error) {
	al, err := proxy.OpenAccessLog(o.accessLog, o.accessFormat, io.Stderr)
	if err != nil {
		return nil, cmdkit.Wrap(err, cmdkit.ExitUsage, "give --access-log stderr or a file zd-queue may create and append to")
	}
	return al, nil
}
