package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// overhead is zd-run's own share of a reload's time, when it can be told.
type overhead struct {
	Reloads     int     `json:"reloads"`
	ZdctlP50MS  float64 `json:"zdctl_reload_p50_ms"`
	ZdctlMaxMS  float64 `json:"zdctl_reload_max_ms"`
	ToolkitP50  float64 `json:"toolkit_p50_ms,omitempty"`
	ToolkitMax  float64 `json:"toolkit_max_ms,omitempty"`
	InsideP50   float64 `json:"inside_zd_run_p50_ms,omitempty"` // the same from zd-run's first to last step: no zdctl process
	InsideMax   float64 `json:"inside_zd_run_max_ms,omitempty"`
	Explanation string  `json:"explanation"`
}

func (z *zdrun) overhead() *overhead {
	if len(z.results) == 0 {
		return nil
	}
	var d, tk, in []float64
	for _, r := range z.results {
		d = append(d, float64(r.wall.Microseconds())/1000)
		tk = append(tk, float64((r.wall-r.app).Microseconds())/1000)
		if r.inside > 0 {
			in = append(in, float64(max(0, r.inside-r.app).Microseconds())/1000)
		}
	}
	slices.Sort(d)
	slices.Sort(tk)
	slices.Sort(in)
	// The same median as bench/load's reports: the ceil(n/2)-th value.
	mid := (len(d)+1)/2 - 1
	var inP50, inMax float64
	if len(in) > 0 {
		inP50, inMax = in[(len(in)+1)/2-1], in[len(in)-1]
	}
	return &overhead{
		InsideP50: inP50, InsideMax: inMax,
		Reloads: len(d), ZdctlP50MS: d[mid], ZdctlMaxMS: d[len(d)-1],
		ToolkitP50: tk[mid], ToolkitMax: tk[len(tk)-1],
		Explanation: "wall time of `zdctl reload` until it exits (old generation gone); toolkit overhead = that minus " +
			"the union of the app's own spawn→ready and SIGTERM→exit spans from zdctl's step lines",
	}
}

type resultsFile struct {
	Machine      machine  `json:"machine"`
	MaxKeepAlive float64  `json:"max_rate_keep_alive"`
	MaxClose     float64  `json:"max_rate_close"`
	Options      options  `json:"-"`
	Results      []result `json:"results"`
	// Idle is each zd-run strategy's reload overhead measured with no load.
	Idle map[string]*overhead `json:"overhead_without_load"`
}

func (f *resultsFile) write(mdPath, jsonPath string) error {
	if jsonPath != "" {
		if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	tmp := mdPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(f.markdown()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, mdPath); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func mode(keepAlive bool) string {
	if keepAlive {
		return "keep-alive"
	}
	return "Connection: close"
}

func (f *resultsFile) markdown() string {
	var b strings.Builder
	m := f.Machine
	o := f.Options
	fmt.Fprintf(&b, "# zd reload benchmark\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (bench/cmd/zd-bench) on %s at commit `%s`. Do not edit by hand; rerun `make bench`.\n\n", m.Date, m.Commit)
	fmt.Fprintf(&b, "**Machine:** %d CPUs (nproc), %d MB memory, %s, %s, load average at start %s. "+
		"The load generator, the apps and the supervisors share these CPUs.\n\n", m.NProc, m.MemoryMB, m.Kernel, m.GoVersion, m.Load)
	fmt.Fprintf(&b, "**Method:** the maximum rate of one echo process was measured first (closed loop, 32 connections, %s): "+
		"**%.0f req/s keep-alive, %.0f req/s with Connection: close**. Each target then ran under open-loop load "+
		"(fixed rate, latency measured from when each request was due, up to %d requests in flight) at %.0f%% of that rate "+
		"(%.0f req/s keep-alive, %.0f req/s close), while being reloaded %d times, %s apart; load stops %s after the last reload. "+
		"The load generator is `zd-load` (bench/load): it never retries and counts refused (ECONNREFUSED), "+
		"reset (ECONNRESET/EPIPE/connection closed before a complete response), timeout (5 s) and non-2xx separately. "+
		"\"During reload\" latencies are those of requests that overlapped a reload's span. "+
		"zd-run's state directory is on tmpfs (/dev/shm) when there is one, as /run is in production.\n\n",
		o.calibrate, f.MaxKeepAlive, f.MaxClose, o.inFlight, o.fraction*100, f.MaxKeepAlive*o.fraction, f.MaxClose*o.fraction,
		o.reloads, o.interval, o.interval)

	b.WriteString("## Summary\n\n")
	b.WriteString("| target | connections | requests | ok | failed | failed per reload | reloads ok |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range f.Results {
		if r.Report == nil {
			fmt.Fprintf(&b, "| %s | %s | %s | | | | |\n", r.Target, mode(r.KeepAlive), r.Skipped)
			continue
		}
		p := r.Report
		perReload := 0.0
		if len(p.Reloads) > 0 {
			perReload = float64(p.Failed()) / float64(len(p.Reloads))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %.1f | %d/%d |\n", r.Target, mode(r.KeepAlive), p.Requests, p.OK, p.Failed(),
			perReload, len(p.Reloads)-p.ReloadsFailed, len(p.Reloads))
	}
	b.WriteString("\n")
	f.overheads(&b)
	f.verdicts(&b)
	f.ratios(&b)

	for _, t := range targets() {
		var rows []result
		for _, r := range f.Results {
			if r.Target == t.name {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s\n\n%s.\n\n", t.name, t.note)
		b.WriteString("| connections | requests | ok | refused | reset | timeout | non-2xx | p50 / p99 during reloads | p50 / p99 outside | reload time p50 / max | rate target / achieved | load avg before / after |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|\n")
		for _, r := range rows {
			if r.Report == nil {
				fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | |\n", mode(r.KeepAlive), r.Skipped)
				continue
			}
			p := r.Report
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %.2f / %.2f ms | %.2f / %.2f ms | %.0f / %.0f ms | %.0f / %.0f /s | %s / %s |\n",
				mode(r.KeepAlive), p.Requests, p.OK, p.Refused, p.Reset, p.Timeout, p.Non2xx,
				p.LatencyReload.P50ms, p.LatencyReload.P99ms, p.LatencyOut.P50ms, p.LatencyOut.P99ms, p.ReloadMs.P50ms, p.ReloadMs.MaxMs,
				p.TargetRate, p.Rate, r.LoadAvg[0], r.LoadAvg[1])
		}
		b.WriteString("\n")
		for _, r := range rows {
			if p := r.Report; p != nil && p.TargetRate > 0 && p.Rate < 0.9*p.TargetRate {
				fmt.Fprintf(&b, "- %s: **overloaded**: it completed %.0f req/s of the %.0f asked for (load average %s → %s on %d CPUs), "+
					"so requests queued in the load generator and the latencies above include that queueing (they are measured from when each request was due).\n",
					mode(r.KeepAlive), p.Rate, p.TargetRate, r.LoadAvg[0], r.LoadAvg[1], f.Machine.NProc)
			}
		}
		for _, r := range rows {
			if r.PeakRSSkB > 0 {
				fmt.Fprintf(&b, "- %s: peak RSS of zd-run over the %d reloads: **%.1f MB** (largest VmRSS sampled every 50 ms), VmHWM at the end %.1f MB",
					mode(r.KeepAlive), o.reloads, float64(max(r.SampledRSSkB, r.PeakRSSkB))/1024, float64(r.PeakRSSkB)/1024)
				if strings.Contains(t.name, "handoff") {
					b.WriteString(" (VmHWM restarts with each re-exec: it is the last image's peak)")
				}
				b.WriteString("\n")
			}
			if ov := r.Overhead; ov != nil {
				fmt.Fprintf(&b, "- %s: zdctl reload took p50 %.0f ms, max %.0f ms", mode(r.KeepAlive), ov.ZdctlP50MS, ov.ZdctlMaxMS)
				if ov.ToolkitP50 > 0 || ov.ToolkitMax > 0 {
					fmt.Fprintf(&b, "; zd-run's own overhead p50 %.1f ms, max %.1f ms (see above)", ov.ToolkitP50, ov.ToolkitMax)
				}
				b.WriteString("\n")
			}
			if r.Report != nil {
				for _, e := range r.Report.Errors {
					fmt.Fprintf(&b, "- %s, a failure seen: `%s`\n", mode(r.KeepAlive), e)
				}
				for i, rl := range r.Report.Reloads {
					if rl.Err != "" {
						fmt.Fprintf(&b, "- %s, reload %d failed: `%s`\n", mode(r.KeepAlive), i+1, rl.Err)
						break
					}
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ratios compares each target's failures and reload-time latency with the
// naive restart's and with its own outside-reload latency.
func (f *resultsFile) ratios(b *strings.Builder) {
	naive := map[bool]*result{}
	for i := range f.Results {
		if r := &f.Results[i]; r.Target == "naive restart" && r.Report != nil {
			naive[r.KeepAlive] = r
		}
	}
	b.WriteString("## Ratios\n\n")
	b.WriteString("| target | connections | failure rate | failures vs naive restart | p99 during / outside reloads |\n|---|---|---:|---:|---:|\n")
	for _, r := range f.Results {
		if r.Report == nil {
			continue
		}
		p := r.Report
		rate := 0.0
		if p.Requests > 0 {
			rate = float64(p.Failed()) / float64(p.Requests)
		}
		vs := "n/a"
		if n := naive[r.KeepAlive]; n != nil && n.Report.Requests > 0 && n.Report.Failed() > 0 {
			nrate := float64(n.Report.Failed()) / float64(n.Report.Requests)
			vs = fmt.Sprintf("%.3f×", rate/nrate)
		}
		p99 := "n/a"
		if p.LatencyOut.P99ms > 0 && p.LatencyReload.N > 0 {
			p99 = fmt.Sprintf("%.2f×", p.LatencyReload.P99ms/p.LatencyOut.P99ms)
		}
		fmt.Fprintf(b, "| %s | %s | %.4f%% | %s | %s |\n", r.Target, mode(r.KeepAlive), rate*100, vs, p99)
	}
	b.WriteString("\n")
}

// verdicts states, per target, whether the zero-failure promise held in
// this run, and that the naive restart failed (the harness can fail).
func (f *resultsFile) verdicts(b *strings.Builder) {
	b.WriteString("## Verdicts\n\n")
	for _, r := range f.Results {
		if r.Report == nil {
			continue
		}
		p := r.Report
		failedReloads := ""
		if p.ReloadsFailed > 0 {
			failedReloads = fmt.Sprintf(", %d reloads failed", p.ReloadsFailed)
		}
		verdict := "**holds**: 0 refused, 0 reset, 0 timeout, 0 non-2xx"
		if p.Failed() > 0 || p.ReloadsFailed > 0 {
			verdict = fmt.Sprintf("**does not hold**: %d refused, %d reset, %d timeout, %d non-2xx, %d other%s",
				p.Refused, p.Reset, p.Timeout, p.Non2xx, p.Other, failedReloads)
		}
		if r.Target == "naive restart" {
			if p.Failed() > 0 {
				verdict = fmt.Sprintf("fails as expected (%d failed requests): the harness can see failures", p.Failed())
			} else {
				verdict = "**0 failures: the harness did not see the restart's gap — suspect the harness**"
			}
		}
		fmt.Fprintf(b, "- %s, %s, %d reloads: %s\n", r.Target, mode(r.KeepAlive), len(p.Reloads), verdict)
	}
	b.WriteString("\n")
}

// overheads tabulates zd-run's own share of a reload, with and without load.
func (f *resultsFile) overheads(b *strings.Builder) {
	var rows []string
	for _, t := range targets() {
		var cells []string
		for _, r := range f.Results {
			if r.Target == t.name && r.Overhead != nil {
				cells = append(cells, fmt.Sprintf("%s: %.1f / %.1f ms", mode(r.KeepAlive), r.Overhead.ToolkitP50, r.Overhead.ToolkitMax))
			}
		}
		idle := ""
		if ov := f.Idle[t.name]; ov != nil {
			idle = fmt.Sprintf("%.1f / %.1f ms (zdctl reload p50 %.0f ms); inside zd-run %.1f / %.1f ms",
				ov.ToolkitP50, ov.ToolkitMax, ov.ZdctlP50MS, ov.InsideP50, ov.InsideMax)
		}
		if len(cells) > 0 || idle != "" {
			rows = append(rows, fmt.Sprintf("| %s | %s | %s |", t.name, idle, strings.Join(cells, "; ")))
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("## zd-run's own reload overhead\n\n")
	b.WriteString("Wall time of `zdctl reload` (until it exits: the old generation is gone) minus the union of the app's own " +
		"spawn→ready and SIGTERM→exit spans, read from zdctl's step lines. For handoff the app does nothing, so all of it is zd-run's " +
		"(validating the new binary in a child, re-exec, adopting the workers). p50 / max over the reloads; target under 50 ms. " +
		"\"Inside zd-run\" is the same subtraction from zd-run's own first to last step of the reload (for handoff: the check and the exec), " +
		"leaving out the zdctl process's start and its control-socket round trips.\n\n")
	b.WriteString("| target | without load | under the benchmark load |\n|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\n")
}
