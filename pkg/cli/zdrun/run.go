package zdrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/listenfd"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
	"github.com/zdtools/zd/pkg/statedir"
	"github.com/zdtools/zd/pkg/supervisor"
	"golang.org/x/sys/unix"
)

func run(ctx context.Context, c *cli.Command, io cmdkit.IO, fk *supervisor.Forker, early chan os.Signal) error {
	o, err := parseOptions(c, io)
	if err != nil {
		return err
	}
	if err := statedir.CheckName(o.cfg.Name); err != nil {
		return cmdkit.UsageError("use a short name of letters, digits, '-', '_' and '.'", "--name %q: %v", o.cfg.Name, err)
	}
	dir := statedir.Resolve(o.dirFlag, o.cfg.Name, io.Getenv)
	if err := statedir.Ensure(dir); err != nil {
		var se *statedir.Error
		if errors.As(err, &se) {
			return &cmdkit.Error{Code: cmdkit.ExitUsage, Message: se.Error(), Hint: se.Hint}
		}
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "choose another --state-dir")
	}
	o.cfg.StateDir = dir
	// --worker-listen may name the state dir (quoted, so the shell left it).
	o.cfg.WorkerListen = strings.NewReplacer("${ZD_STATE_DIR}", dir, "$ZD_STATE_DIR", dir).Replace(o.cfg.WorkerListen)
	if _, err := exec.LookPath(o.cfg.Command[0]); err != nil {
		why := "not found in PATH"
		switch {
		case strings.ContainsRune(o.cfg.Command[0], '/') && errors.Is(err, os.ErrNotExist):
			why = "no such file"
		case errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied"):
			why = "not executable"
		case strings.ContainsRune(o.cfg.Command[0], '/'):
			why = "not an executable file"
		}
		return cmdkit.UsageError("give a path to the app, or put it in PATH", "cannot find the command %q: %s", o.cfg.Command[0], why)
	}
	log, err := cmdkit.NewLogger(io.Stderr, o.logFmt, o.logLvl)
	if err != nil {
		return err
	}
	noListener := len(o.specs) == 0 && o.cfg.WorkerListen == "" && io.Getenv("LISTEN_FDS") == "" && io.Getenv(supervisor.UpgradeEnv) == ""
	if c.Bool("check") {
		if noListener {
			fmt.Fprintln(io.Stderr, "zd-run: warning: "+noListenerWarning)
		}
		fmt.Fprintf(io.Stdout, "zd-run %s: configuration ok\n", cmdkit.Version())
		return nil
	}
	log = log.With("prog", "zd-run", "name", o.cfg.Name)
	o.cfg.Logger = log
	o.cfg.Forker = fk
	o.cfg.Version = cmdkit.Version()
	o.cfg.Env = os.Environ()
	o.cfg.SelfArgs = os.Args
	o.cfg.SelfPath = selfPath()

	inh, upgraded, err := inheritedFromUpgrade(io.Getenv)
	if err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "the previous zd-run image handed over bad descriptors")
	}
	listeners, err := openListeners(o.specs, upgraded, inh)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range listeners {
			l.File.Close()
		}
	}()
	o.cfg.Listeners = listeners
	if upgraded {
		o.cfg.Inherit = &supervisor.Inheritance{State: inh.state, Notify: inh.notify}
	}
	o.cfg.Env = scrubEnv(os.Environ())
	o.cfg.SelfWatchdog = supervisor.WatchdogInterval(io.Getenv, os.Getpid())
	o.cfg.Notify = func(state string) {
		if _, err := sdnotify.Notify(io.Getenv, state); err != nil {
			log.Debug("notify systemd", "err", err)
		}
	}

	copts := control.Options{AllowGIDs: o.allowG, Logger: log}
	var srv *control.Server
	if upgraded && inh.control != nil {
		l, err := net.FileListener(inh.control)
		inh.control.Close()
		if err == nil {
			ul, ok := l.(*net.UnixListener)
			if !ok {
				return cmdkit.Failf(cmdkit.ExitFailure, "", "the carried control socket is a %T, not a unix listener", l)
			}
			ul.SetUnlinkOnClose(true) // as the first image's server would have
			srv, err = control.FromListener(ul, copts)
		}
		if err != nil {
			return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
		}
	} else {
		srv, err = control.Listen(filepath.Join(dir, statedir.RunSock), copts)
		if err != nil {
			who := "--name " + o.cfg.Name
			if o.dirFlag != "" {
				who = "--state-dir " + dir
			}
			return cmdkit.Wrap(err, cmdkit.ExitFailure,
				"is another zd-run running with this --name/--state-dir? `zdctl "+who+" status` tells")
		}
	}
	// Signals are asked for here, before the supervisor runs, so that none
	// takes its default action once zd-run serves.
	// After an upgrade Main asked for them already (early): the signals that
	// arrived since wait in that channel.
	sigC := early
	if sigC == nil {
		sigC = make(chan os.Signal, 8)
	}
	notifySignals(sigC)
	o.cfg.ExecFailed = func() { notifySignals(sigC) }
	sup, err := supervisor.New(o.cfg)
	if err != nil {
		srv.Close()
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	pidFile := filepath.Join(dir, statedir.RunPID)
	if err := statedir.WritePID(pidFile, os.Getpid()); err != nil {
		log.Warn("cannot write the pid file", "err", err)
	}
	carry := func() (map[string]*os.File, error) {
		f, err := srv.File()
		if err != nil {
			return nil, err
		}
		return map[string]*os.File{"control": f}, nil
	}

	sctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(sctx, sup.Handler(carry)); err != nil && !errors.Is(err, control.ErrServerClosed) {
			log.Error("control socket", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		handleSignals(sctx, sigC, sup, carry, log, &wg)
	}()
	if upgraded {
		log.Info("zd-run upgraded in place", "version", o.cfg.Version, "pid", os.Getpid())
	} else {
		log.Info("zd-run started", "version", o.cfg.Version, "workers", o.cfg.Workers, "state_dir", dir,
			"listen", strings.Join(listenAddrs(listeners), ","))
		if len(listeners) == 0 && o.cfg.WorkerListen == "" {
			log.Warn(noListenerWarning)
		}
	}
	err = sup.Run(ctx)
	cancel()
	srv.Close()
	wg.Wait()
	if pid, perr := statedir.ReadPID(pidFile); perr == nil && pid == os.Getpid() {
		os.Remove(pidFile)
	}
	if err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	return nil
}

// noListenerWarning is said when zd-run gets no socket to share: legal (an
// app may open its own, or be a queue consumer), but usually a forgotten
// --listen.
const noListenerWarning = "no listener: the workers get no socket from zd-run (no --listen, --worker-listen or LISTEN_FDS); " +
	"give --listen tcp://:8080 (or :8080) unless the app opens its own"

// handleSignals maps signals to supervisor actions until ctx ends.
func handleSignals(ctx context.Context, sigC <-chan os.Signal, sup *supervisor.Supervisor, carry func() (map[string]*os.File, error),
	log interface {
		Info(string, ...any)
		Warn(string, ...any)
	}, wg *sync.WaitGroup) {
	// The caller never calls signal.Stop: a QUIT or TERM arriving while
	// zd-run finishes its exit must not take the default action.
	terms := 0
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigC:
			by := "signal " + unix.SignalName(sig.(syscall.Signal))
			if sig == syscall.SIGHUP && sup.DefaultStrategy() == runapi.StrategyHandoff {
				sig = syscall.SIGUSR2 // HUP with --strategy handoff upgrades zd-run
			}
			switch sig {
			case syscall.SIGHUP:
				log.Info("reload requested", "by", by)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := sup.Reload(ctx, runapi.ReloadArgs{}); err != nil {
						log.Warn("HUP reload", "err", err)
					}
				}()
			case syscall.SIGUSR2:
				log.Info("upgrade requested", "by", by)
				wg.Add(1)
				go func() {
					defer wg.Done()
					extra, err := carry()
					if err == nil {
						_, err = sup.UpgradeWith(ctx, extra, nil)
						for _, f := range extra {
							f.Close()
						}
					}
					log.Warn("USR2 upgrade", "err", err)
				}()
			case syscall.SIGTERM, syscall.SIGINT:
				terms++
				if terms > 1 {
					log.Warn("second stop signal: stopping now", "by", by)
				}
				sup.StopBy(terms > 1, by)
			case syscall.SIGQUIT:
				sup.StopBy(true, by)
			}
		}
	}
}

// selfPath is the zd-run binary a self-upgrade execs: argv[0] as found now
// (so a new build installed at the same path is picked up).
func selfPath() string {
	p, err := exec.LookPath(os.Args[0])
	if err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "/proc/self/exe"
}

// scrubEnv drops what zd-run consumed from the environment the workers get.
func scrubEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
			supervisor.UpgradeEnv, supervisor.ShimEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

type inherited struct {
	state   []byte
	notify  *os.File
	control *os.File
	listen  []*os.File
}

// inheritedFromUpgrade takes the fds named in supervisor.UpgradeEnv.
func inheritedFromUpgrade(getenv func(string) string) (*inherited, bool, error) {
	raw := getenv(supervisor.UpgradeEnv)
	if raw == "" {
		return nil, false, nil
	}
	os.Unsetenv(supervisor.UpgradeEnv)
	inh := &inherited{}
	for _, item := range strings.Split(raw, ",") {
		k, v, _ := strings.Cut(item, "=")
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return nil, true, fmt.Errorf("%s: bad item %q", supervisor.UpgradeEnv, item)
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), k)
		switch k {
		case "state":
			b, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<20))
			f.Close()
			if err != nil {
				return nil, true, fmt.Errorf("read the carried state: %w", err)
			}
			inh.state = b
		case "notify":
			inh.notify = f
		case "control":
			inh.control = f
		case "listen":
			inh.listen = append(inh.listen, f)
		default:
			f.Close()
		}
	}
	return inh, true, nil
}

// openListeners returns the shared sockets: carried over by an upgrade,
// inherited from systemd (LISTEN_FDS, matched to --listen by name, else in
// order), or opened here.
func openListeners(specs []listenfd.Spec, upgraded bool, inh *inherited) ([]supervisor.Listener, error) {
	var out []supervisor.Listener
	if upgraded {
		for i, f := range inh.listen {
			l := supervisor.Listener{Name: "listen" + strconv.Itoa(i), File: f, Addr: describe(f)}
			if i < len(specs) {
				l.Name = specs[i].Name
			}
			out = append(out, l)
		}
		return out, nil
	}
	files, err := listenfd.Inherited(true)
	if err != nil {
		return nil, cmdkit.Wrap(err, cmdkit.ExitUsage, "check LISTEN_FDS/LISTEN_FDNAMES from the parent (systemd)")
	}
	if len(files) > 0 {
		used := map[int]bool{}
		for _, sp := range specs {
			for i, f := range files {
				if !used[i] && f.Name() == sp.Name {
					used[i] = true
					out = append(out, supervisor.Listener{Name: sp.Name, File: f, Addr: describe(f)})
				}
			}
		}
		for i, f := range files {
			if !used[i] {
				out = append(out, supervisor.Listener{Name: f.Name(), File: f, Addr: describe(f)})
			}
		}
		return out, nil
	}
	for _, sp := range specs {
		f, err := sp.Listen()
		if err != nil {
			for _, l := range out {
				l.File.Close()
			}
			return nil, cmdkit.Wrap(fmt.Errorf("listen on %s: %w", sp.String(), err), cmdkit.ExitFailure,
				"is the address in use or privileged? pick another --listen, or let systemd pass the socket")
		}
		out = append(out, supervisor.Listener{Name: sp.Name, File: f, Addr: describe(f)})
	}
	return out, nil
}

func describe(f *os.File) string {
	info, err := listenfd.Describe(f)
	if err != nil {
		return f.Name()
	}
	return info.Network() + "://" + info.Local
}

func listenAddrs(ls []supervisor.Listener) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name+"="+l.Addr)
	}
	return out
}
