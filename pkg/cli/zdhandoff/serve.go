package zdhandoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/handoff"
	"github.com/zdtools/zd/pkg/listenfd"
	"github.com/zdtools/zd/pkg/sdnotify"
	"golang.org/x/sys/unix"
)

// runServe: zd-handoff serve --socket PATH [--fd N[=NAME]]... [-- CMD [ARGS]].
func runServe(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	log, timeout, path, err := commonFlags(c, io)
	if err != nil {
		return err
	}
	grace, err := durationFlag(c, "grace")
	if err != nil {
		return err
	}
	allow, err := gids(c)
	if err != nil {
		return err
	}
	cmdArgs := commandArgs(c.Args().Slice())
	var cmdPath string
	if len(cmdArgs) > 0 {
		if cmdPath, err = lookPath(cmdArgs[0]); err != nil {
			return err
		}
	}
	files, err := heldFiles(c.StringSlice("fd"))
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	offers := make([]handoff.Offer, len(files))
	for i, f := range files {
		offers[i] = handoff.Offer{Name: f.Name()}
		if info, err := listenfd.Describe(f); err == nil {
			offers[i] = handoff.Offer{Name: f.Name(), Family: info.Family, Type: info.Type, Local: info.Local}
		}
	}
	releaseTimeout := timeout
	if c.String("release-timeout") != "" {
		if releaseTimeout, err = durationFlag(c, "release-timeout"); err != nil {
			return err
		}
	}
	settle, err := durationFlag(c, "settle")
	if err != nil {
		return err
	}
	pred, err := handoff.InheritedPredecessor(io.Getenv)
	if err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "start serve with take --release, or unset "+handoff.EnvReleaseFD)
	}
	if pred != nil {
		defer pred.Close()
	}
	// Started by take --release: answer next to the handoff path until the
	// predecessor lets us have it; otherwise take the path at once.
	var hs *handoff.Socket
	if pred != nil {
		hs, err = handoff.Bind(path)
	} else {
		hs, err = handoff.Listen(path)
	}
	if err != nil {
		return socketError(err)
	}
	s := &server{log: log, timeout: timeout, hs: hs, srv: handoff.NewServer(handoff.Config{Log: log, Files: files, Offers: offers,
		Allow: allow, Timeout: timeout, ReleaseTimeout: releaseTimeout, Socket: hs})}
	var notify *sdnotify.Receiver
	var extraEnv []string
	if c.Bool("notify") && cmdPath != "" {
		if notify, err = sdnotify.Listen(fmt.Sprintf("@zd-handoff-notify-%d-%d", os.Getpid(), time.Now().UnixNano())); err != nil {
			hs.Close(log)
			return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
		}
		defer notify.Close()
		extraEnv = []string{"NOTIFY_SOCKET=" + notify.Path()}
	}
	// Catch signals before the child exists, so that none meant for it is
	// lost; one that came earlier has cancelled ctx.
	sig := newSignals(cmdPath != "")
	defer sig.stop()
	if ctx.Err() != nil {
		hs.Close(log)
		return nil
	}
	var child *os.Process
	if cmdPath != "" {
		if child, err = startShim(cmdPath, cmdArgs, files, extraEnv); err != nil {
			hs.Close(log)
			return cmdkit.Wrap(err, cmdkit.ExitFailure, "check that "+cmdArgs[0]+" is an executable")
		}
		log.Info("started", "cmd", cmdPath, "pid", child.Pid)
	}
	log.Info("serving", "socket", hs.Where(), "fds", len(files), "offers", describeOffers(offers))
	return s.run(ctx, runOpts{sig: sig, child: child, once: c.Bool("once"), grace: grace,
		pred: pred, notify: notify, settle: settle})
}

// signals are the ones serve handles: stop (TERM, INT) and, with a child,
// pass (HUP, USR1, USR2: they mean something to the app, like reload or
// reopen logs, and don't stop serve).
type signals struct {
	stopc, passc chan os.Signal
}

func newSignals(child bool) *signals {
	s := &signals{stopc: make(chan os.Signal, 4), passc: make(chan os.Signal, 4)}
	signal.Notify(s.stopc, syscall.SIGTERM, syscall.SIGINT)
	if child {
		signal.Notify(s.passc, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	}
	return s
}

func (s *signals) stop() {
	signal.Stop(s.stopc)
	signal.Stop(s.passc)
}

// heldFiles returns the --fd descriptors, or the inherited LISTEN_FDS ones.
func heldFiles(specs []string) ([]*os.File, error) {
	if len(specs) == 0 {
		files, err := listenfd.Inherited(true)
		if err != nil {
			return nil, cmdkit.Wrap(err, cmdkit.ExitUsage, "fix LISTEN_FDS/LISTEN_FDNAMES, or pass --fd N")
		}
		if len(files) == 0 {
			return nil, cmdkit.UsageError("start serve with sockets (zd-handoff listen ADDR -- zd-handoff serve ..., "+
				"systemd socket activation, or take) or pass --fd N", "nothing to offer: no LISTEN_FDS for this process and no --fd")
		}
		return files, nil
	}
	var files []*os.File
	var seen []int
	for _, spec := range specs {
		ns, name, _ := strings.Cut(spec, "=")
		fd, err := strconv.Atoi(ns)
		if err == nil && fd >= 0 {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		}
		if err != nil || fd < 0 {
			closeFiles(files)
			return nil, cmdkit.UsageError("pass the number of a descriptor this process holds, like --fd 3=web", "--fd %q: not an open descriptor", spec)
		}
		if name != "" {
			if err := listenfd.ValidName(name); err != nil {
				closeFiles(files)
				return nil, cmdkit.UsageError("names are 1-255 printable ASCII characters without ':'", "--fd %q: %v", spec, err)
			}
		}
		if slices.Contains(seen, fd) {
			closeFiles(files)
			return nil, cmdkit.UsageError("give each descriptor once", "--fd %d given twice", fd)
		}
		seen = append(seen, fd)
		// serve owns it now; it must not leak into the child a second time.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			closeFiles(files)
			return nil, cmdkit.Wrap(fmt.Errorf("fd %d: %w", fd, err), cmdkit.ExitFailure, "")
		}
		files = append(files, os.NewFile(uintptr(fd), name))
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func describeOffers(offers []handoff.Offer) string {
	ss := make([]string, len(offers))
	for i, o := range offers {
		ss[i] = fmt.Sprintf("%d:%s=%s", listenfd.FirstFD+i, o.Name, o.Local)
	}
	return strings.Join(ss, " ")
}

// server is serve's handoff.Server and what run's loop needs of it.
type server struct {
	log     *slog.Logger
	timeout time.Duration
	hs      *handoff.Socket
	srv     *handoff.Server
}

// runOpts is what run needs besides the server.
type runOpts struct {
	sig    *signals
	child  *os.Process
	once   bool
	grace  time.Duration
	pred   *handoff.Predecessor // set when started by take --release
	notify *sdnotify.Receiver   // with --notify: the child's READY=1 comes here
	settle time.Duration        // without --notify: the child is ready once alive this long
}

// run accepts takers until released, --once is satisfied, the child
// exits, or a signal stops it. Started by take --release, it also tells
// the predecessor when the child is ready and publishes the handoff
// socket when told to (see pkg/handoff).
func (s *server) run(ctx context.Context, o runOpts) error {
	child := o.child
	lctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	s.srv.Start()
	// Whoever connected before the path changed hands is answered.
	stopListening := s.srv.StopListening
	defer func() {
		s.srv.Close()
		cancel()
		wg.Wait()
	}()

	childDone := make(chan *os.ProcessState, 1)
	if child != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := child.Wait()
			if err != nil {
				s.log.Error("wait for child", "pid", child.Pid, "err", err)
			}
			childDone <- st
		}()
	}
	readyC := s.readiness(lctx, &wg, o)
	var predC <-chan predMsg
	pred := o.pred
	if pred != nil {
		predC = listenPredecessor(lctx, &wg, pred)
	}
	readySent := false
	var answerC <-chan time.Time // bound of the predecessor's answer to ready
	// takeOver publishes the socket on the handoff path and, when the
	// predecessor is still there to hear it, says so.
	takeOver := func(why string, confirm bool) error {
		defer func() {
			pred.Close()
			pred = nil
			answerC = nil
		}()
		if err := s.hs.Publish(); err != nil {
			err = socketError(err)
			s.log.Error("could not take the handoff path", "err", err)
			return err
		}
		if confirm {
			if err := pred.Published(s.timeout); err != nil {
				s.log.Warn("tell the predecessor we took the path", "err", err) // it checks the path itself
			}
		}
		s.log.Info(why, "socket", s.hs.Path())
		return nil
	}
	// abort ends a successor that may not take over: the predecessor
	// still has the handoff path and goes on serving.
	abort := func(msg string) error {
		s.log.Error("handoff aborted: " + msg + "; stopping, the old generation keeps serving")
		if child != nil {
			s.stopChild(child, childDone, o.grace)
		}
		return &cmdkit.Error{Code: cmdkit.ExitReloadAborted, Message: "handoff aborted: " + msg,
			Hint: "the old generation is still serving; fix what the log says and take over again"}
	}
	var graceC <-chan time.Time
	done := ctx.Done()
	for {
		select {
		case <-readyC:
			readyC = nil
			s.log.Info("ready")
			if pred != nil {
				if err := pred.Ready(s.hs, s.timeout); err != nil {
					s.log.Warn("tell the predecessor we are ready", "err", err) // its answer (EOF) decides
				}
				readySent = true
				answerC = time.After(s.timeout)
			}
		case m := <-predC:
			predC = nil
			switch {
			case m.err == nil && m.st.Op == handoff.OpGo && readySent:
				if err := takeOver("took over the handoff path from the predecessor", true); err != nil {
					return abort("could not take the handoff path: " + err.Error())
				}
			case m.err == nil && m.st.Op == handoff.OpAbort:
				return abort("the predecessor says: " + m.st.Error)
			case errors.Is(m.err, io.EOF):
				// The predecessor is gone: nobody else serves the path.
				if err := takeOver("predecessor went away; serving on the handoff path", false); err != nil {
					if child != nil {
						s.stopChild(child, childDone, o.grace)
					}
					return err
				}
			case m.err != nil:
				return abort("lost the predecessor: " + m.err.Error())
			default:
				return abort(fmt.Sprintf("the predecessor sent %q out of turn", m.st.Op))
			}
		case <-answerC:
			return abort(fmt.Sprintf("the predecessor did not answer within %v", s.timeout))
		case ev := <-s.srv.Events():
			switch {
			case ev.Kind == handoff.Released:
				s.log.Info("released by taker", "successor", ev.PID)
				stopListening()
				if child != nil {
					s.stopChild(child, childDone, o.grace)
				}
				return nil
			case o.once:
				stopListening()
				if child == nil {
					return nil
				}
			}
		case st := <-childDone:
			child = nil
			if pred != nil {
				// Before taking over: the handoff failed, whatever the status.
				return abort(fmt.Sprintf("the child (%s) ended before the handoff completed", st))
			}
			return childExit(st)
		case sg := <-o.sig.passc:
			s.log.Info("passing signal on", "signal", sg.String(), "pid", child.Pid)
			child.Signal(sg)
		case sg := <-o.sig.stopc:
			if child == nil {
				s.log.Info("stopping", "signal", sg.String())
				return nil
			}
			s.log.Info("forwarding signal", "signal", sg.String(), "pid", child.Pid)
			child.Signal(sg)
			if graceC == nil {
				graceC = time.After(o.grace)
			}
		case <-graceC:
			s.log.Warn("child did not stop within the grace period; killing it", "pid", child.Pid, "grace", o.grace)
			child.Kill()
			graceC = nil
		case <-done:
			if child == nil {
				return nil
			}
			done = nil // the signal itself arrives on sigc
		}
	}
}

// readiness returns a channel closed once the child is ready: at once
// without a child, on READY=1 with --notify, else after --settle. A child
// that exits first is seen by run's loop first.
func (s *server) readiness(ctx context.Context, wg *sync.WaitGroup, o runOpts) <-chan struct{} {
	ready := make(chan struct{})
	switch {
	case o.child == nil:
		close(ready)
	case o.notify != nil:
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := o.notify.Receive(ctx)
				if err != nil {
					return
				}
				if (m.PID == o.child.Pid || (m.PID != 0 && m.UID == os.Getuid())) && m.Is(sdnotify.KeyReady) {
					close(ready)
					return
				}
			}
		}()
	default:
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(o.settle)
			defer t.Stop()
			select {
			case <-t.C:
				close(ready)
			case <-ctx.Done():
			}
		}()
	}
	return ready
}

// stopChild sends TERM, waits up to grace, then KILL.
func (s *server) stopChild(child *os.Process, childDone <-chan *os.ProcessState, grace time.Duration) {
	s.log.Info("stopping child", "pid", child.Pid, "grace", grace)
	child.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case st := <-childDone:
		s.log.Info("child stopped", "pid", child.Pid, "status", st.String())
	case <-t.C:
		s.log.Warn("child did not stop within the grace period; killing it", "pid", child.Pid, "grace", grace)
		child.Kill()
		<-childDone
	}
}

// childExit turns the child's end into serve's exit status.
func childExit(st *os.ProcessState) error {
	if st == nil {
		return cmdkit.Failf(cmdkit.ExitFailure, "", "lost track of the child")
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &cmdkit.Error{Code: 128 + int(ws.Signal()), Message: "child " + st.String()}
	}
	if st.ExitCode() == 0 {
		return nil
	}
	return &cmdkit.Error{Code: st.ExitCode(), Message: "child " + st.String()}
}

// predMsg is the one message a predecessor sends (go or abort), or the
// error that ended the wait for it (io.EOF: the predecessor is gone).
type predMsg struct {
	st  handoff.Status
	err error
}

// listenPredecessor reads the predecessor's one message in the background.
func listenPredecessor(ctx context.Context, wg *sync.WaitGroup, p *handoff.Predecessor) <-chan predMsg {
	c := make(chan predMsg, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		st, err := p.Next(ctx)
		c <- predMsg{st: st, err: err}
	}()
	return c
}

// socketError gives an error of the handoff socket's life its exit code
// and a hint in terms of serve's flags.
func socketError(err error) error {
	var he *handoff.Error
	if !errors.As(err, &he) {
		return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
	}
	switch he.Step {
	case "stat":
		return &cmdkit.Error{Code: cmdkit.ExitUsage, Message: he.Message, Hint: "choose another --socket path", Err: he.Err}
	case "mkdir":
		return cmdkit.Wrap(he.Err, cmdkit.ExitFailure, "create the socket's directory, or choose another --socket")
	case "bind":
		return cmdkit.Wrap(he.Err, cmdkit.ExitFailure, "check that the directory of --socket is writable, and the path short")
	case "rename":
		return cmdkit.Wrap(he.Err, cmdkit.ExitFailure, "check that the directory of --socket is writable")
	}
	return cmdkit.Wrap(err, cmdkit.ExitFailure, he.Hint)
}
