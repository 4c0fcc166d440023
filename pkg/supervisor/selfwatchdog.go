package supervisor

import (
	"strconv"
	"time"
)

// WatchdogInterval returns zd-run's own systemd watchdog interval from its
// environment: WATCHDOG_USEC when it is a positive number and WATCHDOG_PID
// is unset or pid (systemd sets both; a WATCHDOG_PID naming another process
// means the variables were meant for an ancestor). 0 when there is none.
func WatchdogInterval(getenv func(string) string, pid int) time.Duration {
	us, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(pid) {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}

// selfWatchdog sends WATCHDOG=1 every half of cfg.SelfWatchdog while the
// supervisor is responsive: each ping first takes the state lock that every
// request, reload step and exit takes, so a deadlocked or wedged supervisor
// stops pinging and systemd's WatchdogSec= acts (by default it kills zd-run
// with SIGABRT, and Restart= starts it again). A degraded service or one
// whose reload is running is still pinged: those are states zd-run reports
// (STATUS=, zdctl health) and handles itself; restarting zd-run would stop
// the workers still serving without fixing a bad release. Pings go on
// during a graceful stop until the supervisor closes.
func (s *Supervisor) selfWatchdog() {
	defer s.wg.Done()
	every := max(s.cfg.SelfWatchdog/2, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		alive := s.ctx.Err() == nil
		s.mu.Unlock()
		if alive {
			s.cfg.Notify("WATCHDOG=1")
		}
	}
}
