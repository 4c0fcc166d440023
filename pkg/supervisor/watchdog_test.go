package supervisor

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
)

// --watchdog: workers get WATCHDOG_USEC and WATCHDOG_PID (their own pid);
// a ready worker that stops pinging is replaced by the rolling path.
func TestWatchdogReplacesSilentWorker(t *testing.T) {
	h := start(t, 1, nil, func(c *Config) { c.Watchdog = 300 * time.Millisecond })
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
	if !has("WATCHDOG_USEC=300000") || !has("WATCHDOG_PID="+itoa(first)) {
		t.Errorf("worker environment lacks WATCHDOG_USEC=300000 and WATCHDOG_PID=%d", first)
	}
	// The test app never sends WATCHDOG=1.
	h.waitFor("the silent worker replaced", func(s runapi.Status) bool {
		return len(s.Workers) >= 1 && s.Workers[0].PID != first && s.Workers[0].State == "ready"
	})
}
