package load

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Counts is how many requests ended in each class.
type Counts struct {
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Refused  int64 `json:"refused"`
	Reset    int64 `json:"reset"`
	Timeout  int64 `json:"timeout"`
	Non2xx   int64 `json:"non2xx"`
	Other    int64 `json:"other"`
}

// Failed is every request that did not end in ClassOK.
func (c Counts) Failed() int64 { return c.Requests - c.OK }

func (c *Counts) add(cl Class) {
	c.Requests++
	switch cl {
	case ClassOK:
		c.OK++
	case ClassRefused:
		c.Refused++
	case ClassReset:
		c.Reset++
	case ClassTimeout:
		c.Timeout++
	case ClassNon2xx:
		c.Non2xx++
	default:
		c.Other++
	}
}

// Latency summarises the latencies of a set of requests, failed ones
// included (a failure's latency is how long it took to fail). Zero when N is 0.
type Latency struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// ReloadResult is one run of the reload command as reported.
type ReloadResult struct {
	AtMs       float64 `json:"at_ms"`
	DurationMs float64 `json:"duration_ms"`
	ExitCode   int     `json:"exit_code"`
	Err        string  `json:"error,omitempty"`
	Output     string  `json:"output,omitempty"`
}

// Report is the result of a run. Its JSON form is what `zd-load -json` prints.
type Report struct {
	URL         string  `json:"url"`
	Mode        string  `json:"mode"` // "closed" or "open"
	KeepAlive   bool    `json:"keep_alive"`
	Connections int     `json:"connections"`
	TargetRate  float64 `json:"target_rate,omitempty"`
	DurationS   float64 `json:"duration_s"`
	Rate        float64 `json:"rate"` // requests completed per second

	Counts
	DuringReload  Counts         `json:"during_reload"`
	StatusCodes   map[int]int64  `json:"status_codes,omitempty"`
	Errors        []string       `json:"errors,omitempty"` // the first error of each class, for diagnosis
	Latency       Latency        `json:"latency"`
	LatencyReload Latency        `json:"latency_during_reload"`
	LatencyOut    Latency        `json:"latency_outside_reload"`
	Reloads       []ReloadResult `json:"reloads,omitempty"`
	ReloadsFailed int            `json:"reloads_failed"`
	ReloadWindows int            `json:"reload_windows"` // reloads run plus windows read from the marks file
	ReloadMs      Latency        `json:"reload_time"`
	WebSocket     *WSStats       `json:"websocket,omitempty"` // sessions, in a WebSocket run
}

func buildReport(cfg Config, start time.Time, elapsed time.Duration, workers []*worker, windows []window, reloads []reloadRun) *Report {
	rep := &Report{
		URL: cfg.URL, Mode: "closed", KeepAlive: !cfg.Close, Connections: cfg.Connections,
		DurationS: elapsed.Seconds(), StatusCodes: map[int]int64{}, ReloadWindows: len(windows),
	}
	switch {
	case cfg.WebSocket:
		rep.Mode = "websocket"
	case cfg.Rate > 0:
		rep.Mode, rep.TargetRate = "open", cfg.Rate
	}
	slices.SortFunc(windows, func(a, b window) int { return cmp.Compare(a.start, b.start) })
	var all, during, outside []time.Duration
	var firstErr [numClasses]string
	for _, w := range workers {
		for _, s := range w.samples {
			lat := s.end - s.start
			rep.Counts.add(s.class)
			if s.status != 0 {
				rep.StatusCodes[int(s.status)]++
			}
			all = append(all, lat)
			if overlaps(windows, s) {
				rep.DuringReload.add(s.class)
				during = append(during, lat)
			} else {
				outside = append(outside, lat)
			}
		}
		for c, e := range w.errs {
			if firstErr[c] == "" {
				firstErr[c] = e
			}
		}
	}
	for _, e := range firstErr {
		if e != "" {
			rep.Errors = append(rep.Errors, e)
		}
	}
	if elapsed > 0 {
		rep.Rate = float64(rep.Requests) / elapsed.Seconds()
	}
	rep.Latency, rep.LatencyReload, rep.LatencyOut = summarise(all), summarise(during), summarise(outside)
	var took []time.Duration
	for _, r := range reloads {
		rep.Reloads = append(rep.Reloads, ReloadResult{
			AtMs: ms(r.start), DurationMs: ms(r.end - r.start), ExitCode: r.ExitCode, Err: r.Err, Output: r.Output,
		})
		if r.ExitCode != 0 || r.Err != "" {
			rep.ReloadsFailed++
		}
		took = append(took, r.end-r.start)
	}
	rep.ReloadMs = summarise(took)
	return rep
}

// overlaps reports whether s overlaps any window (sorted by start).
func overlaps(windows []window, s sample) bool {
	// The first window starting after s ended and every later one can't overlap.
	n := sort.Search(len(windows), func(i int) bool { return windows[i].start > s.end })
	for _, w := range windows[:n] {
		if w.end >= s.start {
			return true
		}
	}
	return false
}

func summarise(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	pick := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Latency{N: len(ds), P50ms: ms(pick(0.50)), P99ms: ms(pick(0.99)), MaxMs: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	conn := "keep-alive"
	if !r.KeepAlive {
		conn = "Connection: close"
	}
	shape := fmt.Sprintf("closed loop, %d connections", r.Connections)
	if r.Mode == "open" {
		shape = fmt.Sprintf("open loop at %.0f/s, up to %d in flight", r.TargetRate, r.Connections)
	}
	if r.Mode == "websocket" {
		shape, conn = fmt.Sprintf("%d WebSocket sessions", r.Connections), "echo per message"
	}
	fmt.Fprintf(&b, "%s  (%s, %s, %.1fs, %.0f req/s)\n", r.URL, shape, conn, r.DurationS, r.Rate)
	c := r.Counts
	if ws := r.WebSocket; ws != nil {
		fmt.Fprintf(&b, "  sessions kept %d/%d  dropped %d %v  opened %d  mismatched echoes %d\n",
			ws.Kept, ws.Sessions, ws.Dropped, ws.CloseCodes, ws.Opened, ws.Mismatched)
		b.WriteString("  (below, a request is one message and its echo)\n")
	}
	fmt.Fprintf(&b, "  requests %d  ok %d  refused %d  reset %d  timeout %d  non-2xx %d  other %d\n",
		c.Requests, c.OK, c.Refused, c.Reset, c.Timeout, c.Non2xx, c.Other)
	if len(r.Reloads) > 0 || r.LatencyReload.N > 0 {
		d := r.DuringReload
		fmt.Fprintf(&b, "  during reloads: requests %d  ok %d  failed %d\n", d.Requests, d.OK, d.Failed())
	}
	lat := func(name string, l Latency) {
		if l.N > 0 {
			fmt.Fprintf(&b, "  latency %-15s n=%-8d p50 %8.3fms  p99 %8.3fms  max %8.3fms\n", name, l.N, l.P50ms, l.P99ms, l.MaxMs)
		}
	}
	lat("all", r.Latency)
	lat("during reload", r.LatencyReload)
	lat("outside reload", r.LatencyOut)
	if len(r.Reloads) > 0 {
		fmt.Fprintf(&b, "  reloads %d (failed %d)  time p50 %.1fms  max %.1fms\n",
			len(r.Reloads), r.ReloadsFailed, r.ReloadMs.P50ms, r.ReloadMs.MaxMs)
		for i, rl := range r.Reloads {
			if rl.ExitCode != 0 || rl.Err != "" {
				fmt.Fprintf(&b, "    reload %d failed (exit %d) %s %s\n", i+1, rl.ExitCode, rl.Err, firstLine(rl.Output))
			}
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
