package testscripts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/workertable"
)

// Proxy topology: zd-run gives each worker its own backend socket and
// publishes them; zd-queue (same state dir) routes by the table; zd-run asks
// zd-queue to drain a worker before signalling it. With an app that exits at
// once on TERM (no drain of its own), reloads of every kind fail nothing.
func TestRunBehindZdQueue(t *testing.T) {
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock",
		"--", "zd-echo", "-grace", "0s", "-idle-wait", "0s")
	st := r.waitHealthy()
	for _, w := range st.Workers {
		if !strings.HasPrefix(string(w.Backend), "unix://"+r.dir+"/w") {
			t.Fatalf("worker %d backend %q; want unix://%s/w{slot}.{gen}.sock", w.Slot, w.Backend, r.dir)
		}
	}
	// The table is written right after each change, asynchronously.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tab, err := workertable.Load(filepath.Join(r.dir, "workers.msgpack"))
		if err == nil && len(tab.Ready()) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker table: %v, %v; want 2 ready workers", tab, err)
		}
	}
	qsock := r.startZdQueue()
	l := startLoad(qsock, 8)
	for i, args := range queueReloads {
		stderr := r.reload(args...)
		if !strings.Contains(stderr, "zd-queue: draining backend unix://") && !strings.Contains(stderr, "zd-queue: pause") {
			t.Errorf("reload %d %v did not go through zd-queue:\n%s", i, args, stderr)
		}
	}
	ok, failed := l.stop(t)
	if failed != 0 || ok == 0 {
		t.Errorf("behind zd-queue over 5 reloads: %d ok, %d failed; want 0 failed", ok, failed)
	}
	t.Logf("behind zd-queue over 5 reloads: %d requests, %d failed", ok, failed)
	st = r.waitFor("generation 6", 10*time.Second, func(st runapi.Status) bool { return st.Generation == 6 })
	for _, w := range st.Workers {
		if _, err := os.Stat(strings.TrimPrefix(string(w.Backend), "unix://")); err != nil {
			t.Errorf("backend socket of worker %d: %v", w.Slot, err)
		}
	}
}
