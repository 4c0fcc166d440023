package ui

import (
	"bytes"
	"strings"
	"testing"

	"github.com/charmbracelet/lipgloss"
	"github.com/zdtools/zd/pkg/runapi"
)

var sample = runapi.Status{
	Name: "shop", PID: 42, Health: runapi.HealthDegraded, HealthReason: "slot 1 has no worker",
	Generation: 3, Release: "/srv/shop/releases/43/bin/shop", Strategy: "rolling",
	WorkerStats: runapi.WorkerStats{Total: 1, Ready: 1, Desired: 2}, UptimeSeconds: 3725,
	Workers: []runapi.Worker{{Slot: 0, PID: 4242, Generation: 3, State: "ready", UptimeS: 65, RSSBytes: 12 << 20,
		Restarts: 2, Release: "/srv/shop/releases/43/bin/shop", Status: "serving"}},
	LastReload: &runapi.ReloadResult{Strategy: "rolling", Generation: 3, Error: "worker 1 exited"},
}

func TestStatusPlain(t *testing.T) {
	var b bytes.Buffer
	Status(&b, sample, Options{})
	out := b.String()
	for _, want := range []string{"health: degraded", "reason: slot 1 has no worker", "generation: 3", "workers: 1/2 ready",
		"4242", "12.0MB", "1m05s", "serving", `error="worker 1 exited"`} {
		if !strings.Contains(out, want) {
			t.Errorf("plain status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("plain status has escape codes:\n%q", out)
	}
}

func TestStatusTerminal(t *testing.T) {
	var b bytes.Buffer
	Status(&b, sample, Options{Terminal: true})
	out := b.String()
	for _, want := range []string{"SLOT", "RESTARTS", "4242", "degraded", "1h02m", "──"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("terminal status without Color has escape codes:\n%q", out)
	}
	b.Reset()
	Status(&b, sample, Options{Terminal: true, Color: true})
	if !strings.Contains(b.String(), "\x1b[") {
		t.Errorf("terminal status with Color has no escape codes")
	}
}

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		sec  float64
		want string
	}{{0, "0s"}, {59.9, "59s"}, {61, "1m01s"}, {3600, "1h00m"}, {49 * 3600, "2d01h"}, {-1, "-"}} {
		if got := Duration(c.sec); got != c.want {
			t.Errorf("Duration(%v) = %q; want %q", c.sec, got, c.want)
		}
	}
}

// zdctl status fits an 80-column terminal, in both renderings, even with
// long release paths and STATUS= lines.
func TestStatusFits80Columns(t *testing.T) {
	st := sample
	long := "/srv/deploy/applications/shop-frontend/releases/20261201-2315-4f3a9c1/bin/shop-frontend"
	st.Release, st.RolledBackFrom, st.ResolvesTo = long, runapi.Text(long+"x"), runapi.Text(long+"y")
	st.Listeners = []string{"http=tcp://0.0.0.0:8080", "admin=unix:///run/zd/shop/admin.sock"}
	st.Workers = []runapi.Worker{
		{Slot: 0, PID: 4194301, Generation: 12, State: "draining", UptimeS: 7200, RSSBytes: 1 << 30, Restarts: 12, Release: long,
			Status: "serving 1234 connections, warming caches for tenant eu-west-1 and more"},
		{Slot: 1, PID: 4194302, Generation: 13, State: "starting", Release: strings.Replace(long, "4f3a9c1", "9e8d7c6", 1)},
	}
	st.LastReload = &runapi.ReloadResult{Strategy: "blue-green", Generation: 13, Error: runapi.Text("worker 1 (pid 4194302) of generation 13 exited before it was ready (exit status 1)")}
	for _, opt := range []Options{{}, {Terminal: true}} {
		var b bytes.Buffer
		Status(&b, st, opt)
		for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
			if w := lipgloss.Width(line); w > Width {
				t.Errorf("terminal=%v: line of %d columns:\n%s\nin:\n%s", opt.Terminal, w, line, b.String())
			}
		}
		if !strings.Contains(b.String(), "4f3a9c1 ") || !strings.Contains(b.String(), "9e8d7c6 ") {
			t.Errorf("terminal=%v: the release's end is cut:\n%s", opt.Terminal, b.String())
		}
	}
}
