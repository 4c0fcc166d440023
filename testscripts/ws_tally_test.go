package testscripts

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// A tally follows the numbered messages of one WebSocket session: what was
// sent when, which echoes came back, and what was wrong with them. The
// acceptance test's Go clients keep one per session; its Node client
// (testdata/node/wsaccept.js) keeps the same books in JavaScript.
type tally struct {
	mu         sync.Mutex
	sentAt     []int64 // unix ms of each message sent, by number
	got        []bool  // echo seen, by number
	maxGot     int     // highest number echoed, -1 before the first
	dup        int     // echoes of a number already echoed
	reordered  int     // echoes of a number below one already echoed
	mismatched int     // echoes whose payload was not the message sent
	bounds     []int   // messages sent when each phase ended
	echoes     int     // echoes that were right
}

func newTally() *tally { return &tally{maxGot: -1} }

// acceptMsg is message n of session id: its length varies with n, and
// every tenth one is long enough for permessage-deflate to matter.
func acceptMsg(id string, n int) string {
	pad := n % 23
	if n%10 == 0 {
		pad = 300
	}
	return fmt.Sprintf("%s m%d %s", id, n, strings.Repeat("x", pad))
}

// next numbers the next message to send and records when it was sent.
func (t *tally) next() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sentAt = append(t.sentAt, time.Now().UnixMilli())
	t.got = append(t.got, false)
	return len(t.sentAt) - 1
}

// echo checks one echo of session id.
func (t *tally) echo(id, payload string) {
	var n int
	_, err := fmt.Sscanf(strings.TrimPrefix(payload, id+" "), "m%d", &n)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil || !strings.HasPrefix(payload, id+" ") || n < 0 || n >= len(t.sentAt) || payload != acceptMsg(id, n) {
		t.mismatched++
		return
	}
	switch {
	case t.got[n]:
		t.dup++
	case n < t.maxGot:
		t.reordered++
	}
	t.got[n] = true
	t.echoes++
	t.maxGot = max(t.maxGot, n)
}

// mark ends a phase.
func (t *tally) mark() {
	t.mu.Lock()
	t.bounds = append(t.bounds, len(t.sentAt))
	t.mu.Unlock()
}

// caughtUp says whether every message sent before the last mark has been
// echoed or overtaken by a later echo (so it is either in or lost for good).
func (t *tally) caughtUp() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.bounds) == 0 || t.maxGot+1 >= t.bounds[len(t.bounds)-1]
}

func (t *tally) echoCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.echoes
}

// killWindow is when a worker was killed: from the signal (less a margin
// for what the dead process had read but not answered) to its death (plus
// a margin for writes the kernel took just before it closed the socket).
type killWindow struct{ from, to int64 }

// acceptResult is what a group of sessions reports at the end. Lost is by
// phase (the order of marks); LostUnexplained counts lost messages not
// sent inside any kill window.
type acceptResult struct {
	Sessions        int            `json:"sessions"`
	Opened          int            `json:"opened"`
	Closes          map[string]int `json:"closes"` // early ends, by close code or error
	Sent            int            `json:"sent"`
	Echoed          int            `json:"echoed"`
	Lost            []int          `json:"lost"`
	LostUnexplained int            `json:"lost_unexplained"`
	Duplicated      int            `json:"duplicated"`
	Reordered       int            `json:"reordered"`
	Mismatched      int            `json:"mismatched"`
	Errors          []string       `json:"errors"`
}

// add puts t's books into res.
func (t *tally) add(res *acceptResult, kills []killWindow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res.Sent += len(t.sentAt)
	res.Duplicated += t.dup
	res.Reordered += t.reordered
	res.Mismatched += t.mismatched
	for len(res.Lost) < len(t.bounds)+1 {
		res.Lost = append(res.Lost, 0)
	}
	phase := 0
	for n, ok := range t.got {
		for phase < len(t.bounds) && n >= t.bounds[phase] {
			phase++
		}
		if ok {
			res.Echoed++
			continue
		}
		res.Lost[phase]++
		explained := false
		for _, k := range kills {
			if t.sentAt[n] >= k.from && t.sentAt[n] <= k.to {
				explained = true
			}
		}
		if !explained {
			res.LostUnexplained++
		}
	}
}

// TestTally: the acceptance run's books see a lost, a doubled, a reordered
// and a wrong echo, and put losses in their phase.
func TestTally(t *testing.T) {
	tl := newTally()
	for range 3 {
		tl.next()
	}
	tl.echo("g1", acceptMsg("g1", 0))
	tl.echo("g1", acceptMsg("g1", 2)) // 1 overtaken: lost unless it comes
	tl.mark()
	for range 3 {
		tl.next()
	}
	for i := range tl.sentAt {
		tl.sentAt[i] = int64(i * 1000)
	}
	tl.echo("g1", acceptMsg("g1", 1)) // reordered
	tl.echo("g1", acceptMsg("g1", 2)) // doubled
	tl.echo("g1", acceptMsg("g1", 4)) // 3 lost
	tl.echo("g1", "g1 m5 wrong")      // 5 lost, the echo wrong
	tl.echo("g1", acceptMsg("g2", 5)) // another session's
	var res acceptResult
	tl.add(&res, nil)
	want := acceptResult{Sent: 6, Echoed: 4, Lost: []int{0, 2}, LostUnexplained: 2, Duplicated: 1, Reordered: 1, Mismatched: 2}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Errorf("books = %+v; want %+v", res, want)
	}
	res = acceptResult{}
	tl.add(&res, []killWindow{{from: 2500, to: 3500}})
	if res.LostUnexplained != 1 {
		t.Errorf("with a kill window around message 3: %d unexplained; want 1 (message 5); books %+v, sent at %v", res.LostUnexplained, res, tl.sentAt)
	}
}
