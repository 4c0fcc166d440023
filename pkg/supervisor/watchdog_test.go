package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
)

// --watchdog: workers get WATCHDOG_USEC and WATCHDOG_PID (their own pid);
// a ready worker that stops pinging is replaced by the rolling path.
func TestWatchdogReplacesSilentWorker(t *testing.T) {
	// 2s, not less: the first worker's environment is read after it is
	// ready, before it is replaced, on a machine that may be busy.
	h := start(t, 1, nil, func(c *Config) { c.Watchdog = 2 * time.Second })
	st := h.healthy()
	first := st.Workers[0].PID
	env, err := os.ReadFile("/proc/" + itoa(first) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	vars := strings.Split(string(env), "\x00")
	has := func(kv string) bool {
		for _, v := range vars {
			if v == kv {
				return true
			}
		}
		return false
	}
	if !has("WATCHDOG_USEC=2000000") || !has("WATCHDOG_PID="+itoa(first)) {
		t.Errorf("worker environment lacks WATCHDOG_USEC=2000000 and WATCHDOG_PID=%d", first)
	}
	// The test app never sends WATCHDOG=1.
	h.waitFor("the silent worker replaced", func(s runapi.Status) bool {
		return len(s.Workers) >= 1 && s.Workers[0].PID != first && s.Workers[0].State == "ready"
	})
}

// zd-run's own systemd watchdog: with SelfWatchdog set, WATCHDOG=1 datagrams
// reach a real unixgram socket standing in for systemd's NOTIFY_SOCKET,
// about every half interval, alongside READY=1.
func TestSelfWatchdogPings(t *testing.T) {
	rdir := t.TempDir()
	rpath := filepath.Join(rdir, "systemd.sock")
	r, err := sdnotify.Listen(rpath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := start(t, 1, nil, func(c *Config) {
		c.SelfWatchdog = 100 * time.Millisecond
		c.Notify = func(state string) { _ = sdnotify.NotifyTo(rpath, state) }
	})
	h.healthy()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pings, ready := 0, false
	for pings < 3 || !ready {
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("after %d pings (ready seen: %v): %v", pings, ready, err)
		}
		if m.PID != os.Getpid() {
			t.Errorf("datagram from pid %d; want zd-run's own %d", m.PID, os.Getpid())
		}
		if v, ok := m.Get(sdnotify.KeyWatchdog); ok {
			if v != "1" {
				t.Errorf("WATCHDOG=%s; want 1", v)
			}
			pings++
		}
		ready = ready || m.Is(sdnotify.KeyReady)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"2000000", "", 2 * time.Second},
		{"2000000", "4242", 2 * time.Second},
		{"2000000", "1", 0}, // meant for another process
		{"0", "", 0},
		{"-5", "", 0},
		{"soon", "", 0},
	} {
		env := map[string]string{"WATCHDOG_USEC": c.usec, "WATCHDOG_PID": c.pid}
		if got := WatchdogInterval(func(k string) string { return env[k] }, 4242); got != c.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v; want %v", c.usec, c.pid, got, c.want)
		}
	}
}
