package main

import (
	"bufio"
	"cmp"
	"regexp"
	"slices"
	"strings"
	"time"
)

// zdctl reload prints one line per step on stderr when it is not on a
// terminal: "15:04:05.000 KIND message ... (pid N) ...".
var eventLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d{3}) (\S+) .*?\(pid (\d+)\)`)

// stepLine matches any step line, for the reload's first and last steps.
var stepLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d\.\d{3}) (\S+) `)

// appBusy returns how long, within one reload, some app process was doing
// its own work: starting until ready (spawn→ready) or draining after its stop
// signal (stop→exit), as the union of those spans, so overlapping workers
// (blue-green) are not counted twice. What is left of the reload's wall time
// is the toolkit's own overhead: deciding, forking, signalling, waiting on
// its own loops, and zdctl's round trip.
func appBusy(events string) time.Duration {
	busy, _ := eventSpans(events)
	return busy
}

// eventSpans returns appBusy and the span from zd-run's "reload" (or
// "upgrade") step to its "done" (or "exec") step, the part of a reload
// that happens inside zd-run (0 if the steps are missing): subtracting
// appBusy from it leaves out zdctl's own process start and round trips.
func eventSpans(events string) (busy, inside time.Duration) {
	type span struct{ from, to time.Duration }
	open := map[string]time.Duration{} // "start:PID" or "stop:PID" -> time
	var spans []span
	var first, last time.Duration
	haveFirst := false
	sc := bufio.NewScanner(strings.NewReader(events))
	for sc.Scan() {
		line := sc.Text()
		if st := stepLine.FindStringSubmatch(line); st != nil {
			if at, ok := timeOfDay(st[1]); ok {
				switch st[2] {
				case "reload", "upgrade":
					if !haveFirst {
						first, haveFirst = at, true
					}
				case "done", "exec":
					last = at
				}
			}
		}
		m := eventLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		at, ok := timeOfDay(m[1])
		if !ok {
			continue
		}
		pid := m[3]
		switch m[2] {
		case "spawn":
			open["start:"+pid] = at
		case "stop":
			open["stop:"+pid] = at
		case "ready":
			if from, ok := open["start:"+pid]; ok {
				spans = append(spans, span{from, at})
				delete(open, "start:"+pid)
			}
		case "exit":
			if from, ok := open["stop:"+pid]; ok {
				spans = append(spans, span{from, at})
				delete(open, "stop:"+pid)
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	var total, end time.Duration
	for i, s := range spans {
		if s.to < s.from {
			continue // across midnight: not worth guessing
		}
		if i == 0 || s.from > end {
			total += s.to - s.from
			end = s.to
		} else if s.to > end {
			total += s.to - end
			end = s.to
		}
	}
	if haveFirst && last >= first {
		inside = last - first
	}
	return total, inside
}

// timeOfDay parses "15:04:05.000" as a duration since midnight.
func timeOfDay(s string) (time.Duration, bool) {
	t, err := time.Parse("15:04:05.000", s)
	if err != nil {
		return 0, false
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
		time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond()), true
}
