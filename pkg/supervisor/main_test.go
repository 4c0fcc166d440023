package supervisor

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain doubles as the worker exec shim (the supervisor starts
// /proc/self/exe with ShimEnv set) and as a tiny app (testAppEnv set), so
// the tests run real processes without any other binary.
func TestMain(m *testing.M) {
	if isShim, code := RunShim(os.Getenv, os.Stderr); isShim {
		os.Exit(code)
	}
	if os.Getenv(testAppEnv) != "" {
		os.Exit(testApp())
	}
	goleak.VerifyTestMain(m)
}

const testAppEnv = "ZD_SUPERVISOR_TEST_APP"

// testApp serves HTTP on fd 3 (from LISTEN_FDS, checked against
// LISTEN_PID), says READY=1 unless ZD_TEST_NEVER_READY is set, exits 3 at
// start if ZD_TEST_CRASH is set, and exits 0 on SIGTERM.
func testApp() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	// ZD_TEST_BAD_FILE=PATH: a file saying "crash" or "never" makes this
	// a bad release from then on (tests switch releases without touching
	// the supervisor's config).
	bad := ""
	if p := os.Getenv("ZD_TEST_BAD_FILE"); p != "" {
		b, _ := os.ReadFile(p)
		bad = string(b)
	}
	if os.Getenv("ZD_TEST_CRASH") != "" || bad == "crash" {
		return 3
	}
	gen, slot := os.Getenv("ZD_GENERATION"), os.Getenv("ZD_SLOT")
	// ZD_TEST_SLOW=GEN/SLOT: that worker takes 2s to start.
	if os.Getenv("ZD_TEST_SLOW") == gen+"/"+slot {
		time.Sleep(2 * time.Second)
	}
	if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid != os.Getpid() || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintf(os.Stderr, "test app: LISTEN_PID=%s LISTEN_FDS=%s, my pid %d\n", os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getpid())
		return 1
	}
	ln, err := net.FileListener(os.NewFile(3, "listen"))
	if err != nil {
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid=%d gen=%s slot=%s\n", os.Getpid(), os.Getenv("ZD_GENERATION"), os.Getenv("ZD_SLOT"))
	})}
	go srv.Serve(ln)
	if os.Getenv("ZD_TEST_EXTEND") == gen {
		// Ask for more time (60s), then take longer than --ready-timeout
		// (TestExtendTimeout's 5s).
		if c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")); err == nil {
			c.Write([]byte("EXTEND_TIMEOUT_USEC=60000000"))
			c.Close()
		}
		time.Sleep(6 * time.Second)
	}
	if os.Getenv("ZD_TEST_NEVER_READY") == "" && bad != "never" {
		if c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")); err == nil {
			c.Write([]byte("READY=1\nSTATUS=test app serving"))
			c.Close()
		}
	}
	// ZD_TEST_CRASH_AFTER_READY=GEN/SLOT: that worker dies 300ms after ready.
	var crash <-chan time.Time
	if os.Getenv("ZD_TEST_CRASH_AFTER_READY") == gen+"/"+slot {
		crash = time.After(300 * time.Millisecond)
	}
	select {
	case <-term:
	case <-crash:
		return 4
	}
	srv.Close()
	return 0
}
