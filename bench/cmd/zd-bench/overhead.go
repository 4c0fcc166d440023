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

// appBusy returns how long, within one reload, some app process was doing
// its own work: starting until ready (spawn→ready) or draining after its stop
// signal (stop→exit), as the union of those spans, so overlapping workers
// (blue-green) are not counted twice. What is left of the reload's wall time
// is the toolkit's own overhead: deciding, forking, signalling, waiting on
// its own loops, and zdctl's round trip.
func appBusy(events string) time.Duration {
	type span struct{ from, to time.Duration }
	open := map[string]time.Duration{} // "start:PID" or "stop:PID" -> time
	var spans []span
	sc := bufio.NewScanner(strings.NewReader(events))
	for sc.Scan() {
		m := eventLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := time.Parse("15:04:05.000", m[1])
		if err != nil {
			continue
		}
		at := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
			time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
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
	return total
}
