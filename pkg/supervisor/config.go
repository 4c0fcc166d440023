package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
)

// Listener is one listening socket shared by all workers.
type Listener struct {
	Name string   // LISTEN_FDNAMES name
	Addr string   // for status and logs
	File *os.File // the socket; owned by the supervisor for its whole life
}

// Config is everything a Supervisor needs. The CLI fills it from flags and
// environment; zero values are replaced by the defaults noted.
type Config struct {
	Name     string   // service name (status, logs)
	StateDir string   // where run.sock, workers.msgpack and the notify socket live
	Command  []string // the app: argv[0] is resolved through PATH and symlinks at each spawn
	Env      []string // the app's base environment (LISTEN_*, NOTIFY_SOCKET and ZD_* are set over it)

	Listeners    []Listener
	WorkerListen string // per-worker backend socket spec, {slot} and {gen} expanded; "" for none

	Workers      int           // default 1
	Strategy     string        // rolling (default) or blue-green
	MaxSurge     int           // rolling: slots replaced at once; default 1
	Ready        ReadySpec     // default notify
	ReadyTimeout time.Duration // default 30s
	Grace        time.Duration // default 30s
	Settle       time.Duration // a new worker must stay up this long after ready before it takes over; 0 none
	StopSignal   syscall.Signal

	MaxMemory int64         // RSS bytes past which a worker is replaced; 0 none
	Watchdog  time.Duration // a ready worker must send WATCHDOG=1 this often or be replaced; 0 none
	// SelfWatchdog is zd-run's own systemd watchdog interval (WATCHDOG_USEC
	// for this pid): Run sends WATCHDOG=1 through Notify every half of it
	// while the supervisor is responsive (see selfWatchdog). 0 none.
	SelfWatchdog  time.Duration
	RespawnLimit  int // restarts within RespawnWindow before degraded; default 5
	RespawnWindow time.Duration
	NoRespawn     bool
	PreStop       string // shell command run before a worker is signalled

	MaxFDs   uint64  // RLIMIT_NOFILE of workers; 0 inherits
	CPULimit float64 // percent of one CPU for all workers (cgroup v2 cpu.max); 0 none
	UID, GID int     // -1 keeps zd-run's

	QueueSocket  string        // zd-queue control socket; default STATEDIR/queue.sock when it exists
	DrainTimeout time.Duration // bound of zd-queue's drain; default Grace

	SelfPath string   // zd-run binary for self-upgrade
	SelfArgs []string // zd-run's own argv, for --check and the in-place re-exec
	Version  string
	Inherit  *Inheritance // set by an upgraded image: adopt instead of starting
	Forker   *Forker      // the main thread's fork server (ServeForks); nil forks from a thread of its own
	// ExecFailed runs when the in-place re-exec failed, after HUP and INT
	// were set to ignored for it: the caller asks for its signals again.
	ExecFailed func()

	Logger *slog.Logger
	// Notify, when set, receives sd_notify states for zd-run's own
	// supervisor (systemd): READY=1, RELOADING=1, STOPPING=1, STATUS=.
	Notify func(state string)
}

func (c *Config) setDefaults() {
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.Strategy == "" {
		c.Strategy = runapi.StrategyRolling
	}
	if c.MaxSurge <= 0 {
		c.MaxSurge = 1
	}
	if c.Ready.Kind == "" {
		c.Ready = ReadySpec{Kind: "notify"}
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.StopSignal == 0 {
		c.StopSignal = syscall.SIGTERM
	}
	if c.RespawnLimit <= 0 {
		c.RespawnLimit = 5
	}
	if c.RespawnWindow <= 0 {
		c.RespawnWindow = 5 * time.Minute
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = c.Grace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Notify == nil {
		c.Notify = func(string) {}
	}
}

// CheckStrategy reports whether s names a worker reload strategy.
func CheckStrategy(s string) error {
	switch s {
	case runapi.StrategyRolling, runapi.StrategyBlueGreen:
		return nil
	case "socket-handoff", runapi.StrategyHandoff:
		return nil
	}
	return fmt.Errorf("unknown strategy %q (want rolling, blue-green or handoff)", s)
}

// NormalizeStrategy maps the origin's names to ours ("socket-handoff" is
// "handoff").
func NormalizeStrategy(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "socket-handoff" {
		return runapi.StrategyHandoff
	}
	if s == "bluegreen" {
		return runapi.StrategyBlueGreen
	}
	return s
}

// expand replaces {slot} and {gen} in a per-worker template.
func expand(tmpl string, slot, gen int) string {
	r := strings.NewReplacer("{slot}", fmt.Sprint(slot), "{gen}", fmt.Sprint(gen))
	return r.Replace(tmpl)
}
