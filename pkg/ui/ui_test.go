package ui

import (
	"bytes"
	"strings"
	"testing"

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
	for _, want := range []string{"SLOT", "RESTARTS", "4242", "degraded", "1h02m", "╭"} {
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
