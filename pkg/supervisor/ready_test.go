package supervisor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/sdnotify"
)

// Apps that cannot notify are found ready by a probe; the app here never
// sends READY=1, so only the probe can make it ready. (A tcp or http probe of
// the shared socket passes as soon as the kernel queues the connection, so
// it says little about the new worker: real setups point probes at a
// per-worker address. Here it may stop the old worker while the new one is
// still starting, hence the short grace.)
func TestReadyProbes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, probe := range []string{"tcp:" + addr, "http://" + addr + "/", "exec:kill -0 $ZD_PID", "delay:50ms"} {
		t.Run(probe, func(t *testing.T) {
			spec, err := ParseReady(probe)
			if err != nil {
				t.Fatal(err)
			}
			h := start(t, 1, []string{"ZD_TEST_NEVER_READY=1"}, func(c *Config) {
				c.Ready = spec
				c.Listeners = []Listener{{Name: "http", Addr: "tcp://" + addr, File: f}}
				c.ReadyTimeout = 10 * time.Second
				c.Grace = 1500 * time.Millisecond
			})
			h.healthy()
			if _, err := h.s.Reload(context.Background(), runapi.ReloadArgs{}); err != nil {
				t.Fatalf("reload with --ready %s: %v", probe, err)
			}
		})
	}
}

// A probe that never passes aborts the reload at --ready-timeout.
func TestReadyProbeTimeout(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "down")
	h := start(t, 1, []string{"ZD_TEST_NEVER_READY=1"}, func(c *Config) {
		c.Ready = ReadySpec{Kind: "exec", Arg: "test ! -e " + flag}
		c.ReadyTimeout = 5 * time.Second // the first generation's probe must pass within it on a busy machine
	})
	h.healthy()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := h.s.Reload(context.Background(), runapi.ReloadArgs{})
	if err == nil || !strings.Contains(err.Error(), "not ready after 5s") {
		t.Fatalf("reload with a failing probe = %v; want not ready after 5s", err)
	}
	if st := h.healthy(); st.Generation != 1 {
		t.Errorf("generation %d after the abort; want 1", st.Generation)
	}
}

// --ready is validated whole at parse time, so zd-run --check refuses what
// could never pass (http:foo has no host).
func TestParseReady(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: the String() form, or "error"
	}{
		{"notify", "notify"},
		{"tcp:127.0.0.1:80", "tcp:127.0.0.1:80"},
		{"tcp://127.0.0.1:80", "tcp:127.0.0.1:80"},
		{"tcp::9{slot}0", "tcp::9{slot}0"},
		{"http://127.0.0.1:80/healthz", "http://127.0.0.1:80/healthz"},
		{"https://[::1]:8443/", "https://[::1]:8443/"},
		{"http:foo", "error"},
		{"http:///path", "error"},
		{"tcp:foo", "error"},
		{"exec: ", "error"},
		{"delay:2", "delay:2s"},
		{"delay:1.5", "delay:1.5s"},
		{"delay:500ms", "delay:500ms"},
		{"delay:-1", "error"},
		{"delay:soon", "error"},
		{"smoke:signals", "error"},
	} {
		spec, err := ParseReady(c.in)
		got := "error"
		if err == nil {
			got = spec.String()
		}
		if got != c.want {
			t.Errorf("ParseReady(%q) = %q (%v); want %q", c.in, got, err, c.want)
		}
	}
}

// zd-run tells its own service manager READY=1 only once a worker is ready:
// a first generation slower than --ready-timeout holds READY=1 back (with a
// STATUS= saying why) until its worker gets ready, instead of claiming a
// service that cannot serve yet.
func TestReadyHeldUntilAWorkerIsReady(t *testing.T) {
	rdir := t.TempDir()
	rpath := filepath.Join(rdir, "systemd.sock")
	r, err := sdnotify.Listen(rpath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := start(t, 1, []string{"ZD_TEST_SLOW=1/0"}, func(c *Config) {
		c.ReadyTimeout = 300 * time.Millisecond // the worker takes 2 s
		c.Notify = func(state string) { _ = sdnotify.NotifyTo(rpath, state) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waiting := false
	for {
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("no READY=1 (waiting status seen: %v): %v", waiting, err)
		}
		if v, ok := m.Get(sdnotify.KeyStatus); ok && strings.HasPrefix(v, "waiting for a ready worker") {
			waiting = true
		}
		if !m.Is(sdnotify.KeyReady) {
			continue
		}
		st := h.s.Status()
		if len(st.Workers) != 1 || st.Workers[0].State != "ready" {
			t.Fatalf("READY=1 sent while the workers are %+v; want one ready", st.Workers)
		}
		break
	}
	if !waiting {
		t.Error("READY=1 came without a STATUS=waiting for a ready worker first; the worker was slower than --ready-timeout")
	}
}
