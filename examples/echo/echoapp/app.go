// Package echoapp is the code of the example app examples/echo: HTTP on "/"
// answering with the serving pid, generation and slot, a WebSocket echo on
// "/ws", sockets from LISTEN_FDS, READY=1 on NOTIFY_SOCKET and a race-free
// keep-alive drain on SIGTERM. With -state DIR it keeps each WebSocket
// session's counters across restarts and reloads in .zds snapshots
// (state.go, pkg/snapshot); otherwise it imports no zd package: an app needs
// none.
//
// Fault flags (-crash-at-start, -never-ready, -crash-after-ready, -leak-mb)
// make it a bad release on purpose, for tests of zd-run's reload aborts.
package echoapp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type app struct {
	track *tracker
	pid   int
	gen   string
	slot  string
	hold  [][]byte      // memory leaked on purpose with -leak-mb
	state *sessionStore // nil without -state
}

// Main runs the app with args (without the program name) and returns the
// exit code; it logs to logw.
func Main(args []string, logw io.Writer) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(logw)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on when LISTEN_FDS hands no sockets over")
	startDelay := fs.Duration("start-delay", 0, "sleep this long before serving and reporting ready")
	crashAtStart := fs.Bool("crash-at-start", false, "exit 1 at once (a bad release)")
	neverReady := fs.Bool("never-ready", false, "serve but never send READY=1 (a bad release)")
	crashAfterReady := fs.Duration("crash-after-ready", 0, "exit 1 this long after READY=1 (a bad release)")
	leakMB := fs.Int("leak-mb", 0, "grow the resident memory by this many MB per second")
	grace := fs.Duration("grace", 25*time.Second, "longest drain on SIGTERM before cutting connections")
	idleWait := fs.Duration("idle-wait", time.Second, "close a keep-alive connection during drain only once idle this long")
	stateDir := fs.String("state", "", "keep WebSocket session state (?session=ID) in .zds snapshots in this directory across restarts and reloads")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(logw, "echo[%d]: %s\n", os.Getpid(), fmt.Sprintf(format, a...))
	}
	if *crashAtStart {
		logf("crashing at start, as asked (-crash-at-start)")
		return 1
	}
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)

	lns, err := listeners(os.Getenv)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if lns == nil {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			logf("%v", err)
			return 1
		}
		lns = []net.Listener{ln}
	}
	notify, err := newNotifier(os.Getenv)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if *startDelay > 0 {
		select {
		case <-time.After(*startDelay):
		case <-term:
			return 0
		}
	}
	a := &app{track: newTracker(), pid: os.Getpid(), gen: os.Getenv("ZD_GENERATION"), slot: os.Getenv("ZD_SLOT")}
	if *stateDir != "" {
		if a.state, err = newSessionStore(*stateDir, os.Getenv, logf); err != nil {
			logf("-state %s: %v", *stateDir, err)
			return 1
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", a.serveWS)
	if a.state != nil {
		mux.HandleFunc("/session", a.state.serveSession)
	}
	mux.HandleFunc("/", a.serveHello)
	srv := &http.Server{
		Handler:           a.track.Wrap(mux),
		ConnState:         a.track.ConnState,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	// serving counts the Serve loops apart from the other goroutines: the
	// drain must not start before every Serve has returned (see below).
	var wg, serving sync.WaitGroup
	for _, ln := range lns {
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				logf("serve %s: %v", ln.Addr(), err)
			}
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *leakMB > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); a.leak(ctx, *leakMB) }()
	}
	if usec, _ := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); usec > 0 && os.Getenv("WATCHDOG_PID") == strconv.Itoa(os.Getpid()) {
		// sd_notify watchdog: ping at half the period while serving.
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					notify.Send("WATCHDOG=1")
				}
			}
		}()
	}
	crash := make(<-chan time.Time)
	if !*neverReady {
		notify.Send("READY=1\nSTATUS=serving on " + lns[0].Addr().String())
		if *crashAfterReady > 0 {
			crash = time.After(*crashAfterReady)
		}
	}
	select {
	case <-term:
	case <-crash:
		logf("crashing after ready, as asked (-crash-after-ready)")
		os.Exit(1)
	}
	// Drain: stop accepting (our copy of a shared socket only; the other
	// workers keep accepting on theirs), then let connections finish.
	notify.Send("STOPPING=1\nSTATUS=draining")
	if a.state != nil {
		// Before the sessions hear 1012 and reconnect elsewhere, so the
		// worker they reach finds the state written.
		if err := a.state.save(); err != nil {
			logf("save session state: %v", err)
		}
	}
	for _, ln := range lns {
		ln.Close()
	}
	// An Accept already in the kernel when the listener closes can still
	// return a connection; net/http registers it (StateNew) before Serve
	// returns. Draining before that would miss it: the process would exit
	// holding a connection the kernel had accepted for it, and the client,
	// request already sent, would read a reset or an EOF.
	serving.Wait()
	cut := a.track.drain(ctx, *idleWait, *grace)
	if cut > 0 {
		logf("grace %v over: cut %d connections", *grace, cut)
	}
	cancel()
	wg.Wait()
	return 0
}

func (a *app) serveHello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}
	fmt.Fprintf(w, "pid=%d generation=%s slot=%s\n", a.pid, a.gen, a.slot)
}

// leak grows the heap by mb MB per second and touches every page, so the
// resident set grows: a worker zd-run's --max-memory has to replace.
func (a *app) leak(ctx context.Context, mb int) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b := make([]byte, mb<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			a.hold = append(a.hold, b)
		}
	}
}
