package testscripts

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Where TestSnapshotLive's echo gaps come from. A gap is the sum of
// everything between a pinger's two echoes: the client's own process (its
// scheduler and garbage collector, with thousands of sessions open),
// zd-queue (its collector scanning a goroutine stack or two a session),
// the echo app, and the kernel's scheduler on a shared 2-core machine. So
// the run observes each apart, by phase:
//
//   - a lean pinger in a process of its own (zd-pingprobe), which splits
//     each gap into its sender's lateness and the round trip;
//   - the test process's and the probe's runtime: the longest wait of a
//     runnable goroutine (/sched/latencies:seconds), collections;
//   - zd-queue's runtime: the same histogram from its /metrics, and each
//     collection from GODEBUG=gctrace=1 on its stderr, timed as it arrives;
//   - the kernel: how long zd-queue's threads waited on a run queue
//     (/proc/PID/task/*/schedstat) and the machine's CPU pressure
//     (/proc/pressure/cpu), per second of the phase.

// gcCycle is one collection of zd-queue, from its gctrace line.
type gcCycle struct {
	end      time.Time     // when the line arrived
	wall     time.Duration // its clock time, sweep termination to mark termination
	stacksMB int
	heapMB   int // heap live after
	line     string
}

// gcTrace collects zd-queue's gctrace lines as they arrive.
type gcTrace struct {
	mu     sync.Mutex
	part   []byte
	cycles []gcCycle
}

var gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s \d+%: ([0-9.]+)\+([0-9.]+)\+([0-9.]+) ms clock, .*?(\d+)->(\d+)->(\d+) MB.*?(\d+) MB stacks`)

func (g *gcTrace) Write(b []byte) (int, error) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.part = append(g.part, b...)
	for {
		i := bytes.IndexByte(g.part, '\n')
		if i < 0 {
			break
		}
		line := string(g.part[:i])
		g.part = g.part[i+1:]
		m := gcLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var wall float64
		for _, f := range m[1:4] {
			v, _ := strconv.ParseFloat(f, 64)
			wall += v
		}
		live, _ := strconv.Atoi(m[6])
		stacks, _ := strconv.Atoi(m[7])
		g.cycles = append(g.cycles, gcCycle{end: now, wall: time.Duration(wall * float64(time.Millisecond)), stacksMB: stacks, heapMB: live, line: line})
	}
	return len(b), nil
}

func (g *gcTrace) all() []gcCycle {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gcCycle(nil), g.cycles...)
}

// runqWait is how long pid's threads have waited on a kernel run queue.
func runqWait(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b)); len(fs) >= 2 {
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			sum += v
		}
	}
	return time.Duration(sum)
}

// cpuPressure is the machine's "some" CPU pressure stall time so far (the
// time at least one runnable task waited for a CPU), 0 where the kernel
// does not report it.
func cpuPressure() time.Duration {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
		if v, ok := strings.CutPrefix(f, "total="); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

// promHist is a Prometheus histogram's cumulative bucket counts by bound.
type promHist struct {
	le    []float64
	count []float64
	alloc float64 // go_memstats_alloc_bytes_total, read with it
}

// schedHist reads go_sched_latencies_seconds from zd-queue's /metrics on
// its admin socket; nil when it is not there.
func schedHist(admin string) *promHist {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", admin)
	}}}
	resp, err := c.Get("http://zd/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	h := &promHist{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_alloc_bytes_total "); ok {
			h.alloc, _ = strconv.ParseFloat(v, 64)
		}
		rest, ok := strings.CutPrefix(sc.Text(), `go_sched_latencies_seconds_bucket{le="`)
		if !ok {
			continue
		}
		bound, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		le, err1 := strconv.ParseFloat(bound, 64)
		n, err2 := strconv.ParseFloat(val, 64)
		if err1 == nil && err2 == nil {
			h.le, h.count = append(h.le, le), append(h.count, n)
		}
	}
	if len(h.le) == 0 {
		return nil
	}
	return h
}

// maxSince is the range of the highest bucket that gained a count from a
// to b: a goroutine waited between lo and hi to run.
func (b *promHist) maxSince(a *promHist) (lo, hi time.Duration) {
	if a == nil || b == nil || len(a.count) != len(b.count) {
		return -1, -1
	}
	for i := len(b.count) - 1; i >= 0; i-- {
		// cumulative: bucket i alone is count[i]-count[i-1]
		gained := b.count[i] - a.count[i]
		if i > 0 {
			gained -= b.count[i-1] - a.count[i-1]
		}
		if gained > 0 {
			if i > 0 {
				lo = time.Duration(b.le[i-1] * 1e9)
			}
			hi = time.Duration(min(b.le[i], 1e9) * 1e9)
			return lo, hi
		}
	}
	return 0, 0
}

// phaseMark is what was read at the start of a phase.
type phaseMark struct {
	phase int32
	at    time.Time
	self  rtSample
	queue *promHist
	runq  time.Duration // zd-queue's threads
	runqT time.Duration // the test process's threads
	runqW time.Duration // the echo workers' threads
	psi   time.Duration
}

// liveObserver runs the probe and reads the rest at each phase change.
type liveObserver struct {
	t      *testing.T
	ss     *sessions
	admin  string
	qpid   int
	gc     *gcTrace // zd-queue's
	wpids  []int    // the echo workers
	wgc    *gcTrace // zd-run's stderr: the echo workers' (and zd-run's own)
	probe  *exec.Cmd
	pin    io.WriteCloser
	pout   *bufio.Reader
	marks  []phaseMark
	report probeReport
}

func startObserver(t *testing.T, ss *sessions, qsock, admin string, qpid int, gc *gcTrace, wpids []int, wgc *gcTrace, n int, every time.Duration) *liveObserver {
	t.Helper()
	o := &liveObserver{t: t, ss: ss, admin: admin, qpid: qpid, gc: gc, wpids: wpids, wgc: wgc}
	o.probe = exec.Command("zd-pingprobe", qsock, strconv.Itoa(n), every.String())
	o.probe.Stderr = os.Stderr
	var err error
	if o.pin, err = o.probe.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := o.probe.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	o.pout = bufio.NewReader(out)
	if err := o.probe.Start(); err != nil {
		t.Fatalf("start zd-pingprobe: %v", err)
	}
	ready := make(chan error, 1)
	go func() {
		l, err := o.pout.ReadString('\n')
		if err == nil && l != "ready\n" {
			err = fmt.Errorf("said %q", l)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			o.probe.Process.Kill()
			o.probe.Wait()
			t.Fatalf("zd-pingprobe: %v", err)
		}
	case <-time.After(2 * time.Minute):
		o.probe.Process.Kill()
		o.probe.Wait()
		t.Fatal("zd-pingprobe not ready within 2 minutes")
	}
	o.mark(phaseOpen)
	return o
}

func (o *liveObserver) mark(ph int32) {
	var w time.Duration
	for _, pid := range o.wpids {
		w += runqWait(pid)
	}
	o.marks = append(o.marks, phaseMark{phase: ph, at: time.Now(), self: readRT(), queue: schedHist(o.admin),
		runq: runqWait(o.qpid), runqT: runqWait(os.Getpid()), runqW: w, psi: cpuPressure()})
}

// setPhase starts phase ph for the in-process pingers and the probe.
func (o *liveObserver) setPhase(ph int32) {
	o.mark(ph)
	o.ss.phase.Store(ph)
	fmt.Fprintf(o.pin, "phase %d\n", ph)
}

// stop ends the probe and returns its report.
func (o *liveObserver) stop() probeReport {
	o.mark(-1)
	o.pin.Close()
	done := make(chan error, 1)
	go func() { done <- json.NewDecoder(o.pout).Decode(&o.report) }()
	select {
	case err := <-done:
		if err != nil {
			o.t.Errorf("zd-pingprobe's report: %v", err)
		}
	case <-time.After(60 * time.Second):
		o.t.Errorf("zd-pingprobe did not report within 60 s")
		o.probe.Process.Kill()
	}
	o.probe.Wait()
	return o.report
}

var phaseNames = [phases]string{"open", "baseline", "dump", "after", "test-migration"}

// log writes one line a measured phase: the gaps of both kinds of
// pinger, then what each suspect did meanwhile.
func (o *liveObserver) log(g gapReport) {
	cycles, wcycles := o.gc.all(), o.wgc.all()
	within := func(cs []gcCycle, from, to time.Time) (n int, wall time.Duration, stacks, heap int) {
		for _, c := range cs {
			if !c.end.Before(from) && c.end.Before(to) {
				n++
				wall += c.wall
				stacks, heap = max(stacks, c.stacksMB), max(heap, c.heapMB)
			}
		}
		return
	}
	overlaps := func(cs []gcCycle, start, end time.Time) bool {
		for _, c := range cs {
			if c.end.After(start) && c.end.Add(-c.wall).Before(end) {
				return true
			}
		}
		return false
	}
	for i := 1; i+1 < len(o.marks); i++ {
		a, b := o.marks[i], o.marks[i+1]
		if a.phase != phaseBaseline && a.phase != phaseDump && a.phase != phaseMigration {
			continue
		}
		secs := b.at.Sub(a.at).Seconds()
		pp := o.report.Phases[a.phase]
		if pp == nil {
			pp = &probePhase{}
		}
		qlo, qhi := b.queue.maxSince(a.queue)
		ngc, gcWall, stacks, heap := within(cycles, a.at, b.at)
		nwgc, wgcWall, _, _ := within(wcycles, a.at, b.at)
		// How many of the probe's longest gaps over 10 ms in the phase
		// overlapped a collection of zd-queue, of an echo worker, neither.
		var long, inGC, inWGC, neither int
		for _, pg := range o.report.Top {
			if pg.Phase != a.phase {
				continue
			}
			long++
			end := time.Unix(0, pg.EndNS)
			start := end.Add(-time.Duration(pg.GapMS * 1e6))
			q, w := overlaps(cycles, start, end), overlaps(wcycles, start, end)
			if q {
				inGC++
			}
			if w {
				inWGC++
			}
			if !q && !w {
				neither++
			}
		}
		o.t.Logf("phase %s (%.1f s): in-process pingers: longest gap %v (%d over 10 ms of %d); probe: longest gap %.1f ms (%d over 10 ms of %d), longest send gap %.1f ms, longest round trip %.1f ms, its own longest sched wait >= %.1f ms, %d GCs; "+
			"test process: longest sched wait >= %v, %d GCs, run-queue wait %.0f ms/s; zd-queue: longest sched wait %v-%v, %d GCs (%v in all, stacks up to %d MB, heap live up to %d MB), run-queue wait %.0f ms/s, allocating %.1f MB/s; "+
			"echo workers: %d GCs (%v), run-queue wait %.0f ms/s; machine CPU pressure %.0f ms/s; of the probe's %d longest gaps over 10 ms %d overlapped a zd-queue GC, %d an echo worker's, %d neither",
			phaseNames[a.phase], secs, g.max[a.phase].Round(100*time.Microsecond), g.over[a.phase], g.n[a.phase],
			pp.MaxGapMS, pp.Over10, pp.Echoes, pp.MaxSendMS, pp.MaxRTTMS, pp.SchedMaxMS, pp.GCs,
			schedMaxSince(a.self, b.self), b.self.gcs-a.self.gcs, float64(b.runqT-a.runqT)/1e6/secs,
			qlo, qhi, ngc, gcWall.Round(100*time.Microsecond), stacks, heap, float64(b.runq-a.runq)/1e6/secs, allocRate(a.queue, b.queue, secs),
			nwgc, wgcWall.Round(100*time.Microsecond), float64(b.runqW-a.runqW)/1e6/secs, float64(b.psi-a.psi)/1e6/secs, long, inGC, inWGC, neither)
	}
	// zd-queue's collections in the baseline, as gctrace had them.
	var lines []string
	for _, c := range cycles {
		if len(o.marks) > 2 && !c.end.Before(o.marks[1].at) && c.end.Before(o.marks[2].at) && len(lines) < 4 {
			lines = append(lines, c.line)
		}
	}
	o.t.Logf("zd-queue's first collections of the baseline:\n%s", strings.Join(lines, "\n"))
	var shown int
	for _, pg := range o.report.Top {
		if pg.Phase != phaseBaseline && pg.Phase != phaseDump || shown == 6 {
			continue
		}
		shown++
		i := shown - 1
		o.t.Logf("probe gap %d: %s, %.1f ms (sends %.1f ms apart, round trips %.1f then %.1f ms)", i+1, phaseNames[pg.Phase], pg.GapMS, pg.SendMS, pg.PrevRTT, pg.RTTMS)
	}
	if o.report.Lost > 0 || len(o.report.Errors) > 0 {
		o.t.Errorf("zd-pingprobe: %d echoes out of order, errors %q", o.report.Lost, o.report.Errors)
	}
}

// allocRate is zd-queue's allocation from a to b, in MB a second.
func allocRate(a, b *promHist, secs float64) float64 {
	if a == nil || b == nil {
		return -1
	}
	return (b.alloc - a.alloc) / 1e6 / secs
}

// queueMemory reads zd-queue's soft memory limit and what its heap and
// goroutine stacks hold from its /metrics; zeros when unreadable.
func queueMemory(admin string) (limit, inUse float64) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", admin)
	}}}
	resp, err := c.Get("http://zd/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			continue
		}
		switch name {
		case "go_gc_gomemlimit_bytes":
			limit = f
		case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes":
			inUse += f
		}
	}
	return limit, inUse
}
