package testscripts

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// zd-pingprobe is a lean pinger in a process of its own, for measuring
// stalls apart from the test process (which holds thousands of sessions
// and has a garbage collector of its own to run):
//
//	zd-pingprobe SOCK N INTERVAL
//
// opens N WebSocket sessions to /ws?n=probe-I through zd-queue's unix socket
// SOCK, prints "ready", then each session sends "q I K SENT_NS" every
// INTERVAL. A line "phase P" on stdin counts what follows in phase P; EOF
// sends each a Close 1000, waits for the replies and prints a probeReport
// as JSON. Each echo is timed against the previous one's arrival (the gap)
// and against its own send time (the round trip), so a gap splits into
// the sender being late and the path (zd-queue, the echo app, the
// scheduler) being slow; its own runtime's scheduling latency and
// collections show whether the probe itself stalled.
func pingProbe(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: zd-pingprobe SOCK N INTERVAL")
		return 2
	}
	n, err1 := strconv.Atoi(args[1])
	every, err2 := time.ParseDuration(args[2])
	if err1 != nil || err2 != nil || n <= 0 || every <= 0 {
		fmt.Fprintln(os.Stderr, "zd-pingprobe: bad N or INTERVAL")
		return 2
	}
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", args[0])
	}, HandshakeTimeout: 60 * time.Second}
	pr := &pingProber{}
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := d.Dial(fmt.Sprintf("ws://zd/ws?n=probe-%d", i), http.Header{"Cookie": {fmt.Sprintf("session=probe-%d", i)}})
		if err != nil {
			fmt.Fprintf(os.Stderr, "zd-pingprobe: session %d: %v\n", i, err)
			return 1
		}
		conns[i] = c
	}
	fmt.Println("ready")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(2)
		go func() { defer wg.Done(); pr.send(c, i, every, stop) }()
		go func() { defer wg.Done(); pr.read(c, i) }()
	}
	cur := readRT()
	account := func() { // the runtime's readings since cur go to the phase now
		now := readRT()
		ph := pr.phase.Load()
		pr.mu.Lock()
		pr.phases[ph].SchedMaxMS = max(pr.phases[ph].SchedMaxMS, ms(schedMaxSince(cur, now)))
		pr.phases[ph].GCs += now.gcs - cur.gcs
		pr.mu.Unlock()
		cur = now
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "phase "); ok {
			k, _ := strconv.Atoi(p)
			account()
			pr.phase.Store(int32(k))
		}
	}
	account()
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		pr.note("pingers not done 30 s after their Close")
		for _, c := range conns {
			c.Close()
		}
		<-done
	}
	json.NewEncoder(os.Stdout).Encode(pr.report())
	return 0
}

// probeGap is one long gap between two echoes of a session.
type probeGap struct {
	Phase   int32   `json:"phase"`
	EndNS   int64   `json:"end_ns"`  // Unix ns of the echo that ended it
	GapMS   float64 `json:"gap_ms"`  // since the session's echo before
	SendMS  float64 `json:"send_ms"` // between the two sends
	RTTMS   float64 `json:"rtt_ms"`  // round trip of the echo that ended it
	PrevRTT float64 `json:"prev_rtt_ms"`
}

// probePhase is what the probe saw in one phase.
type probePhase struct {
	Echoes    int     `json:"echoes"`
	Over10    int     `json:"over_10ms"`
	MaxGapMS  float64 `json:"max_gap_ms"`
	MaxSendMS float64 `json:"max_send_gap_ms"` // the longest time between two sends of a session
	MaxRTTMS  float64 `json:"max_rtt_ms"`
	// The probe's own runtime in the phase: the longest wait of a
	// runnable goroutine (a histogram bucket's lower bound), collections.
	SchedMaxMS float64 `json:"sched_max_ms"`
	GCs        uint64  `json:"gcs"`
}

type probeReport struct {
	Phases map[int32]*probePhase `json:"phases"`
	Top    []probeGap            `json:"top"` // the longest gaps over 10 ms of each phase, longest first
	Lost   int                   `json:"lost"`
	Errors []string              `json:"errors,omitempty"`
}

type pingProber struct {
	phase  atomic.Int32
	mu     sync.Mutex
	phases [phases]probePhase
	top    [phases][]probeGap // the longest of each phase
	errs   []string
	lost   int
}

func (pr *pingProber) note(s string) {
	pr.mu.Lock()
	pr.errs = append(pr.errs, s)
	pr.mu.Unlock()
}

func (pr *pingProber) send(c *websocket.Conn, i int, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last time.Time
	for k := 0; ; k++ {
		select {
		case <-stop:
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(5*time.Second))
			return
		case <-t.C:
		}
		now := time.Now()
		if !last.IsZero() {
			ph := pr.phase.Load()
			pr.mu.Lock()
			pr.phases[ph].MaxSendMS = max(pr.phases[ph].MaxSendMS, ms(now.Sub(last)))
			pr.mu.Unlock()
		}
		last = now
		c.SetWriteDeadline(now.Add(30 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "q %d %d %d", i, k, now.UnixNano())); err != nil {
			pr.note(fmt.Sprintf("session %d: write: %v", i, err))
			return
		}
	}
}

func (pr *pingProber) read(c *websocket.Conn, i int) {
	var lastAt time.Time
	var lastSent int64
	var lastRTT float64
	for k := 0; ; k++ {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, msg, err := c.ReadMessage()
		now := time.Now()
		if err != nil {
			if !websocket.IsCloseError(err, 1000) {
				pr.note(fmt.Sprintf("session %d: after %d echoes: %v", i, k, err))
			}
			return
		}
		f := strings.Fields(string(msg))
		if len(f) != 4 || f[1] != strconv.Itoa(i) {
			pr.note(fmt.Sprintf("session %d: echo %q", i, msg))
			return
		}
		if got, _ := strconv.Atoi(f[2]); got != k {
			pr.mu.Lock()
			pr.lost++
			pr.mu.Unlock()
			k = got
		}
		sent, _ := strconv.ParseInt(f[3], 10, 64)
		rtt := ms(now.Sub(time.Unix(0, sent)))
		ph := pr.phase.Load()
		pr.mu.Lock()
		p := &pr.phases[ph]
		p.Echoes++
		p.MaxRTTMS = max(p.MaxRTTMS, rtt)
		if !lastAt.IsZero() {
			gap := now.Sub(lastAt)
			p.MaxGapMS = max(p.MaxGapMS, ms(gap))
			if gap > 10*time.Millisecond {
				p.Over10++
				top := append(pr.top[ph], probeGap{Phase: ph, EndNS: now.UnixNano(), GapMS: ms(gap),
					SendMS: ms(time.Duration(sent - lastSent)), RTTMS: rtt, PrevRTT: lastRTT})
				if len(top) > 2*maxTop {
					sortGaps(top)
					top = top[:maxTop]
				}
				pr.top[ph] = top
			}
		}
		pr.mu.Unlock()
		lastAt, lastSent, lastRTT = now, sent, rtt
	}
}

func (pr *pingProber) report() probeReport {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	rep := probeReport{Phases: map[int32]*probePhase{}, Lost: pr.lost, Errors: pr.errs}
	for k := range pr.phases {
		if pr.phases[k].Echoes > 0 {
			p := pr.phases[k]
			rep.Phases[int32(k)] = &p
		}
	}
	for _, top := range pr.top {
		sortGaps(top)
		rep.Top = append(rep.Top, top[:min(len(top), maxTop)]...)
	}
	sortGaps(rep.Top)
	return rep
}

// maxTop is how many of its longest gaps over 10 ms the probe reports a phase.
const maxTop = 200

func sortGaps(g []probeGap) {
	slices.SortFunc(g, func(a, b probeGap) int { return cmp.Compare(b.GapMS, a.GapMS) })
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// rtSample is a reading of this process's runtime: the scheduling
// latency histogram and the collections so far.
type rtSample struct {
	sched *metrics.Float64Histogram
	gcs   uint64
}

func readRT() rtSample {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return rtSample{sched: s[0].Value.Float64Histogram(), gcs: s[1].Value.Uint64()}
}

// schedMaxSince is the lower bound of the highest scheduling-latency
// bucket that gained a count between a and b: at least one goroutine
// waited that long to run.
func schedMaxSince(a, b rtSample) time.Duration {
	for i := len(b.sched.Counts) - 1; i >= 0; i-- {
		if b.sched.Counts[i] > a.sched.Counts[i] {
			return time.Duration(b.sched.Buckets[i] * 1e9)
		}
	}
	return 0
}
