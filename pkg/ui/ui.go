// Package ui renders zd-run's status, reload progress and results for
// people: a lipgloss table with colours on a terminal, and plain aligned
// text otherwise (pipes, NO_COLOR, scripts that grep). Only zdctl uses it;
// data for programs is zdctl's --json, never this.
package ui

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"
	"github.com/zdtools/zd/pkg/runapi"
)

// Options say how to render.
type Options struct {
	Terminal bool // a terminal: lipgloss table (otherwise plain text)
	Color    bool // colours (a terminal without NO_COLOR)
}

type styles struct {
	r                          *lipgloss.Renderer
	ok, warn, bad, dim, header lipgloss.Style
}

func newStyles(w io.Writer, opt Options) styles {
	r := lipgloss.NewRenderer(w)
	if opt.Color {
		r.SetColorProfile(termenv.ANSI256)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	return styles{
		r:      r,
		ok:     r.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
		warn:   r.NewStyle().Foreground(lipgloss.Color("3")).Bold(true),
		bad:    r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		dim:    r.NewStyle().Foreground(lipgloss.Color("8")),
		header: r.NewStyle().Bold(true).Padding(0, 1),
	}
}

func (s styles) health(h string) string {
	switch h {
	case runapi.HealthHealthy:
		return s.ok.Render(h)
	case runapi.HealthReloading:
		return s.warn.Render(h)
	}
	return s.bad.Render(h)
}

func (s styles) state(st string) string {
	switch st {
	case "ready":
		return s.ok.Render(st)
	case "starting", "draining", "stopping":
		return s.warn.Render(st)
	}
	return s.bad.Render(st)
}

// Status writes st for people.
func Status(w io.Writer, st runapi.Status, opt Options) {
	if !opt.Terminal {
		plainStatus(w, st)
		return
	}
	s := newStyles(w, opt)
	head := fmt.Sprintf("%s  %s  generation %d  %d/%d ready  pid %d  up %s",
		s.header.Render(st.Name), s.health(st.Health), st.Generation, st.WorkerStats.Ready, st.WorkerStats.Desired,
		st.PID, Duration(st.UptimeSeconds))
	fmt.Fprintln(w, head)
	if st.HealthReason != "" {
		fmt.Fprintln(w, s.dim.Render("  "+st.HealthReason))
	}
	fmt.Fprintln(w, s.dim.Render(fmt.Sprintf("  release %s  strategy %s  connections %d  memory %.1f MB  listen %s",
		st.Release, st.Strategy, st.ActiveConnections, st.MemoryUsageMB, strings.Join(st.Listeners, " "))))
	t := table.New().Border(lipgloss.RoundedBorder()).BorderStyle(s.dim).
		Headers("SLOT", "PID", "GEN", "STATE", "UPTIME", "RSS", "RESTARTS", "RELEASE", "STATUS").
		StyleFunc(func(row, col int) lipgloss.Style {
			if row == table.HeaderRow {
				return s.header
			}
			return s.r.NewStyle().Padding(0, 1)
		})
	for _, wk := range st.Workers {
		t.Row(strconv.Itoa(wk.Slot), strconv.Itoa(wk.PID), strconv.Itoa(wk.Generation), s.state(wk.State),
			Duration(wk.UptimeS), MB(wk.RSSBytes), strconv.Itoa(wk.Restarts), shortPath(wk.Release), wk.Status)
	}
	fmt.Fprintln(w, t.Render())
	if r := st.LastReload; r != nil {
		fmt.Fprintln(w, s.dim.Render("  last reload: "+reloadLine(*r)))
	}
}

func plainStatus(w io.Writer, st runapi.Status) {
	fmt.Fprintf(w, "name: %s\nhealth: %s\n", st.Name, st.Health)
	if st.HealthReason != "" {
		fmt.Fprintf(w, "reason: %s\n", st.HealthReason)
	}
	fmt.Fprintf(w, "pid: %d\ngeneration: %d\nrelease: %s\nstrategy: %s\nreload_in_progress: %v\nworkers: %d/%d ready\nactive_connections: %d\nmemory_usage_mb: %.1f\nuptime: %s\nupgrades: %d\n",
		st.PID, st.Generation, st.Release, st.Strategy, st.ReloadInProgress, st.WorkerStats.Ready, st.WorkerStats.Desired,
		st.ActiveConnections, st.MemoryUsageMB, Duration(st.UptimeSeconds), st.Upgrades)
	if r := st.LastReload; r != nil {
		fmt.Fprintf(w, "last_reload: %s\n", reloadLine(*r))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tUPTIME\tRSS\tRESTARTS\tRELEASE\tSTATUS")
	for _, wk := range st.Workers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", wk.Slot, wk.PID, wk.Generation, wk.State,
			Duration(wk.UptimeS), MB(wk.RSSBytes), wk.Restarts, wk.Release, wk.Status)
	}
	tw.Flush()
}

// Event writes one progress line.
func Event(w io.Writer, e runapi.Event, opt Options) {
	ts := time.UnixMilli(e.TimeUnixMS).Format("15:04:05.000")
	if !opt.Terminal {
		fmt.Fprintf(w, "%s %s %s\n", ts, e.Kind, e.Message)
		return
	}
	s := newStyles(w, opt)
	kind := s.dim.Render(fmt.Sprintf("%-8s", e.Kind))
	switch e.Kind {
	case "abort", "degraded":
		kind = s.bad.Render(fmt.Sprintf("%-8s", e.Kind))
	case "ready", "done":
		kind = s.ok.Render(fmt.Sprintf("%-8s", e.Kind))
	}
	fmt.Fprintf(w, "%s %s %s\n", s.dim.Render(ts), kind, e.Message)
}

// Reload writes the result of a reload.
func Reload(w io.Writer, r runapi.ReloadResult, opt Options) {
	if !opt.Terminal {
		fmt.Fprintln(w, reloadLine(r))
		return
	}
	s := newStyles(w, opt)
	mark := s.ok.Render("reloaded")
	if !r.ReloadSuccessful {
		mark = s.bad.Render("aborted")
	}
	fmt.Fprintf(w, "%s %s\n", mark, reloadLine(r))
}

func reloadLine(r runapi.ReloadResult) string {
	if r.ReloadSuccessful {
		return fmt.Sprintf("reload_successful strategy=%s generation=%d duration_ms=%.1f", r.Strategy, r.Generation, r.DurationMS)
	}
	return fmt.Sprintf("reload failed strategy=%s generation=%d duration_ms=%.1f error=%q", r.Strategy, r.Generation, r.DurationMS, r.Error)
}

// Duration renders seconds as 3s, 4m05s, 2h03m, 3d04h.
func Duration(sec float64) string {
	if sec < 0 || math.IsNaN(sec) {
		return "-"
	}
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// MB renders bytes as megabytes with one decimal.
func MB(b int64) string { return fmt.Sprintf("%.1fMB", float64(b)/(1<<20)) }

func shortPath(p string) string {
	if len(p) <= 40 {
		return p
	}
	return "…" + string(filepath.Separator) + filepath.Join(filepath.Base(filepath.Dir(p)), filepath.Base(p))
}
