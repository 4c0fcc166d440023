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
		fmt.Fprintln(w, s.dim.Render(wrap("  "+string(st.HealthReason), Width, "    ")))
	}
	fmt.Fprintln(w, s.dim.Render(fitText("  release "+fitPath(st.Release, Width-10), Width)))
	fmt.Fprintln(w, s.dim.Render(fitText(fmt.Sprintf("  strategy %s  connections %d  memory %.1f MB  listen %s",
		st.Strategy, st.ActiveConnections, st.MemoryUsageMB, strings.Join(st.Listeners, " ")), Width)))
	rows := workerRows(st)
	// No column borders (nine columns of them would not fit): two spaces
	// after each cell.
	fitColumns(rows, Width-2*len(rows[0]))
	t := table.New().Border(lipgloss.NormalBorder()).BorderStyle(s.dim).
		BorderColumn(false).BorderLeft(false).BorderRight(false).BorderTop(false).BorderBottom(false).
		Headers(rows[0]...).
		StyleFunc(func(row, col int) lipgloss.Style {
			if row == table.HeaderRow {
				return s.header.Padding(0, 2, 0, 0)
			}
			return s.r.NewStyle().Padding(0, 2, 0, 0)
		})
	for _, r := range rows[1:] {
		r[3] = s.state(r[3])
		t.Row(r...)
	}
	fmt.Fprintln(w, t.Render())
	if r := st.LastReload; r != nil {
		fmt.Fprintln(w, s.dim.Render(wrap("  last reload: "+reloadLine(*r), Width, "    ")))
	}
}

// Width is the terminal width Status fits into: an 80-column terminal, or
// a log line that is read without scrolling sideways.
const Width = 80

// workerRows are the header and one row per worker of the worker table.
// While workers run different releases, each release is shown by the path
// component where their paths part ("42", "45"; the whole path is in the
// release line above and in --json).
func workerRows(st runapi.Status) [][]string {
	rows := [][]string{{"SLOT", "PID", "GEN", "STATE", "UPTIME", "RSS", "RESTARTS", "RELEASE", "STATUS"}}
	split := make([][]string, len(st.Workers))
	common := -1 // components all the releases share from the start
	for i, wk := range st.Workers {
		split[i] = strings.Split(wk.Release, string(filepath.Separator))
		if i == 0 {
			common = len(split[0]) - 1
			continue
		}
		n := 0
		for n < common && n < len(split[i])-1 && split[i][n] == split[0][n] {
			n++
		}
		common = n
	}
	for i, wk := range st.Workers {
		rel := wk.Release
		if common >= 0 && common < len(split[i])-1 {
			rel = split[i][common]
		}
		rows = append(rows, []string{strconv.Itoa(wk.Slot), strconv.Itoa(wk.PID), strconv.Itoa(wk.Generation), wk.State,
			Duration(wk.UptimeS), MB(wk.RSSBytes), strconv.Itoa(wk.Restarts), rel, string(wk.Status)})
	}
	return rows
}

// fitColumns shortens the RELEASE (keeping the end of the path) and STATUS
// cells of rows so that the columns' widths sum to at most budget.
func fitColumns(rows [][]string, budget int) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], lipgloss.Width(c))
		}
	}
	sum := 0
	for _, wd := range widths {
		sum += wd
	}
	over := sum - budget
	if over <= 0 {
		return
	}
	// The release gives first, down to 14 columns (…/43/bin/app), then
	// the status, down to its header, taking what the release left.
	rel := max(14, widths[7]-over)
	relWidth := len("RELEASE")
	for _, r := range rows[1:] {
		if strings.HasPrefix(r[7], string(filepath.Separator)) {
			r[7] = fitPath(r[7], rel)
		} else {
			r[7] = fitTail(r[7], rel) // a release's name: its end tells them apart
		}
		relWidth = max(relWidth, lipgloss.Width(r[7]))
	}
	status := max(len("STATUS"), budget-(sum-widths[7]-widths[8])-relWidth)
	for _, r := range rows[1:] {
		r[8] = fitText(r[8], status)
	}
}

func plainStatus(w io.Writer, st runapi.Status) {
	fmt.Fprintf(w, "name: %s\nhealth: %s\n", st.Name, st.Health)
	if st.HealthReason != "" {
		fmt.Fprintln(w, wrap("reason: "+string(st.HealthReason), Width, "  "))
	}
	fmt.Fprintf(w, "pid: %d\ngeneration: %d\nrelease: %s\nstrategy: %s\nreload_in_progress: %v\nworkers: %d/%d ready\nactive_connections: %d\nmemory_usage_mb: %.1f\nuptime: %s\nupgrades: %d\n",
		st.PID, st.Generation, fitPath(st.Release, Width-len("release: ")), st.Strategy, st.ReloadInProgress, st.WorkerStats.Ready, st.WorkerStats.Desired,
		st.ActiveConnections, st.MemoryUsageMB, Duration(st.UptimeSeconds), st.Upgrades)
	if st.RolledBackFrom != "" {
		fmt.Fprintf(w, "rolled_back_from: %s\n", fitPath(string(st.RolledBackFrom), Width-len("rolled_back_from: ")))
	}
	if st.ResolvesTo != "" && string(st.ResolvesTo) != st.Release {
		fmt.Fprintf(w, "resolves_to: %s\n", fitPath(string(st.ResolvesTo), Width-len("resolves_to: ")))
	}
	if r := st.LastReload; r != nil {
		fmt.Fprintln(w, wrap("last_reload: "+reloadLine(*r), Width, "  "))
	}
	rows := workerRows(st)
	fitColumns(rows, Width-2*(len(rows[0])-1))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
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

// MB renders bytes as megabytes with one decimal (gigabytes from 1 GiB).
func MB(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1fGB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1fMB", float64(b)/(1<<20))
}

// fitPath shortens path p to at most n columns by keeping its last
// components after "…/" (the release number and the binary are at the end).
func fitPath(p string, n int) string {
	if lipgloss.Width(p) <= n {
		return p
	}
	parts := strings.Split(p, string(filepath.Separator))
	out := parts[len(parts)-1]
	for i := len(parts) - 2; i >= 0; i-- {
		next := parts[i] + string(filepath.Separator) + out
		if lipgloss.Width(next)+2 > n {
			break
		}
		out = next
	}
	out = "…" + string(filepath.Separator) + out
	return fitText(out, n)
}

// wrap breaks s at spaces into lines of at most n columns (a word longer
// than that is cut), the lines after the first indented.
func wrap(s string, n int, indent string) string {
	var out []string
	line := ""
	for _, word := range strings.Fields(s) {
		lead := ""
		if line == "" && len(out) == 0 {
			lead = s[:len(s)-len(strings.TrimLeft(s, " "))]
		}
		switch {
		case line == "":
			line = lead + word
		case lipgloss.Width(line+" "+word) <= n:
			line += " " + word
		default:
			out = append(out, fitText(line, n))
			line = indent + word
		}
	}
	return strings.Join(append(out, fitText(line, n)), "\n")
}

// fitTail cuts s to at most n columns, keeping its end after "…".
func fitTail(s string, n int) string {
	if lipgloss.Width(s) <= n {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > n {
		r = r[1:]
	}
	return "…" + string(r)
}

// fitText cuts s to at most n columns, ending in "…" when cut.
func fitText(s string, n int) string {
	if lipgloss.Width(s) <= n {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > n {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}
