package testscripts

import (
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/zdtools/zd/pkg/queueapi"
)

// liveSize is how big the live-snapshot run is: issue #12's full size
// with ZD_SOAK=1 (10,000 sessions; pkg/snapshot/BENCH.md has its numbers),
// a small one in make test.
type liveSize struct {
	sessions int           // WebSocket sessions, pingers included
	h2       int           // of them, idle sessions over HTTP/2 (RFC 8441); the others are HTTP/1.1
	pingers  int           // of them, HTTP/1.1 sessions sending a numbered message every interval
	interval time.Duration // between two messages of a pinger
	held     int           // requests held for a paused backend
	load     int           // HTTP clients sending requests all along
	every    time.Duration // between two requests of a load client
	window   time.Duration // the baseline window measured before the dump
	// of the sessions, HTTP/1.1 ones pinging as the pingers do from
	// zd-pingprobe, a process of its own; as many as there are pingers
	probes int
}

func liveSizeFromEnv(t *testing.T) liveSize {
	if os.Getenv("ZD_SOAK") == "1" {
		return liveSize{sessions: 10_000, h2: 5_000, pingers: 20, interval: 5 * time.Millisecond, held: 200, load: 4, every: 5 * time.Millisecond, window: 3 * time.Second}
	}
	if testing.Short() {
		t.Skip("-short: the live snapshot run opens hundreds of sessions")
	}
	return liveSize{sessions: 300, h2: 60, pingers: 30, interval: 2 * time.Millisecond, held: 20, load: 8, every: 5 * time.Millisecond, window: time.Second}
}

// TestSnapshotLive is issue #12's live-dump acceptance: zd-queue holds
// WebSocket sessions (most idle, some pinging numbered messages every
// 2 ms through examples/echo), requests held for a paused backend, and
// request load on the other backend; zdctl snapshot then writes its state.
// What must hold: no request fails, no session closes or loses, doubles or
// reorders a message, the file's counts by kind (zd-snapshot inspect
// --json) are zdctl status's, and the records carry what was asked
// (credentials only when encrypted). It measures the longest gap between
// two echoes of any pinger during the dump against a baseline window of
// the same traffic before it, and logs both (BENCH.md); with ZD_SOAK=1
// the dump's gap must stay under 10 ms over the baseline's.
func TestSnapshotLive(t *testing.T) {
	size := liveSizeFromEnv(t)
	// zd-queue has the most descriptors: two for each HTTP/1.1 session
	// (client and backend), one for each HTTP/2 one, a few hundred more.
	if err := raiseFDLimitHard(2*(size.sessions-size.h2) + size.h2 + 1000); err != nil {
		t.Fatalf("cannot open %d sessions: %v", size.sessions, err)
	}
	// gctrace: each collection of the echo workers (and of zd-run), and of
	// zd-queue below, timed as its line arrives.
	wgc := &gcTrace{}
	r := startZdRunWith(t, []string{"GODEBUG=gctrace=1"}, wgc, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	wst := r.waitHealthy()
	admin := filepath.Join(filepath.Dir(r.dir), "admin.sock")
	// The idle clients never read, so they answer none of zd-queue's
	// keepalive pings: a run longer than 30 s + 15 s would lose them.
	gc := &gcTrace{}
	qsock := r.startZdQueueWith([]string{"GODEBUG=gctrace=1"}, gc, "--buffer-time", "300", "--admin", "unix://"+admin, "--ws-ping-interval", "0")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	size.probes = size.pingers
	inProcess := size
	inProcess.sessions -= size.probes
	ss := openSessions(ctx, t, qsock, inProcess)
	defer ss.closeAll()
	t.Logf("%d sessions (%d over HTTP/2) open in %v (load %s)", size.sessions, size.h2, time.Since(start).Round(time.Millisecond), loadAvg())
	// The lean pinger in a process of its own, beside the in-process ones.
	qpid := pidFile(t, filepath.Join(r.dir, "zd-queue.pid"))
	var wpids []int
	for _, w := range wst.Workers {
		wpids = append(wpids, w.PID)
	}
	obs := startObserver(t, ss, qsock, admin, qpid, gc, wpids, wgc, size.probes, size.interval)
	waitQueue(t, r, "every session", time.Minute, func(st queueapi.Status) bool { return st.WebSocket.Sessions == int64(size.sessions) })

	// Requests held for one backend (paused); the load goes to the other.
	st := queueStatus(t, r)
	if len(st.Backends) != 2 {
		t.Fatalf("zd-queue has %d backends; want 2", len(st.Backends))
	}
	paused := st.Backends[0].Addr
	if _, stderr, code := r.zdctl("queue", "pause", "--backend", paused); code != 0 {
		t.Fatalf("zdctl queue pause --backend %s: exit %d: %s", paused, code, stderr)
	}
	l := startLoadEvery(qsock, size.load, size.every)
	held := holdRequests(t, qsock, paused, size.held)
	waitQueue(t, r, "every request held", time.Minute, func(st queueapi.Status) bool { return st.BufferedRequests == size.held })

	// zd-queue's soft memory limit stays above what it uses, or it would
	// collect back to back (it did with 10,000 sessions under a fixed
	// 68 MiB: pkg/snapshot/BENCH.md).
	var limit, inUse float64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if limit, inUse = queueMemory(admin); limit > inUse && inUse > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("zd-queue's soft memory limit %.0f MiB, its heap and stacks %.0f MiB: the limit is not above what it uses", limit/(1<<20), inUse/(1<<20))
			break
		}
	}
	t.Logf("zd-queue: soft memory limit %.0f MiB, heap and stacks in use %.0f MiB", limit/(1<<20), inUse/(1<<20))

	// A baseline window, then the dump. zd-queue's CPU time is read around
	// both (it relays all along), zdctl's from its rusage.
	before := statusCounts(t, r)
	timer := time.NewTimer(size.window)
	obs.setPhase(phaseBaseline)
	cpu0, b0 := procCPU(t, qpid), time.Now()
	<-timer.C
	cpu1, b1 := procCPU(t, qpid), time.Now()
	obs.setPhase(phaseDump)
	t0 := time.Now()
	zc := exec.Command("zdctl", "--state-dir", r.dir, "snapshot", "-o", filepath.Join(r.dir, "live.zds"), "--json")
	var zout, zerr bytes.Buffer
	zc.Stdout, zc.Stderr = &zout, &zerr
	zc.Run()
	dumpWall := time.Since(t0)
	cpu2 := procCPU(t, qpid)
	out, stderr, code := zout.String(), zerr.String(), zc.ProcessState.ExitCode()
	zdctlCPU := zc.ProcessState.UserTime() + zc.ProcessState.SystemTime()
	baseRate := float64(cpu1-cpu0) / b1.Sub(b0).Seconds() // CPU per second of wall, relaying alone
	// A little after the dump still counts as the dump's: an echo held up
	// by it arrives after it.
	tail := time.NewTimer(50 * time.Millisecond)
	<-tail.C
	obs.setPhase(phaseAfter)
	after := statusCounts(t, r)
	if code != 0 {
		t.Fatalf("zdctl snapshot: exit %d: %s", code, stderr)
	}
	var res struct {
		Records int64                    `json:"records"`
		Queue   *queueapi.SnapshotResult `json:"zd_queue"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Queue == nil {
		t.Fatalf("zdctl snapshot --json = %s (%v); want zd_queue's part", out, err)
	}

	// The file's counts are zdctl status's (taken just before and after).
	got := inspectCounts(t, filepath.Join(r.dir, "live.zds"))
	if !slices.ContainsFunc([]map[string]int64{before, after}, func(m map[string]int64) bool { return sameCounts(got, m) }) {
		t.Errorf("zd-snapshot inspect: %v; zdctl status said %v before the dump and %v after", got, before, after)
	}
	if got["ws-session"] != int64(size.sessions) || got["http-request"] != int64(size.held) || got["worker"] != 2 {
		t.Errorf("zd-snapshot inspect: %v; want %d ws-session, %d http-request, 2 worker", got, size.sessions, size.held)
	}
	checkLiveRecords(t, r, size, paused)

	// POST /_zero-downtime/test-migration round-trips the same state.
	obs.setPhase(phaseMigration)
	mt := testMigration(t, admin)
	tail.Reset(50 * time.Millisecond)
	<-tail.C
	obs.setPhase(phaseAfter)
	if !mt.OK || mt.Snapshot.Written["ws-session"] != int64(size.sessions) || mt.Snapshot.Written["http-request"] != int64(size.held) {
		t.Errorf("test-migration: %+v; want ok, %d ws-session and %d http-request written and read", mt, size.sessions, size.held)
	}

	// Everything held is answered once resumed; nothing failed.
	if _, stderr, code := r.zdctl("queue", "resume", "--backend", paused); code != 0 {
		t.Fatalf("zdctl queue resume: exit %d: %s", code, stderr)
	}
	if n := held.wait(t); n != size.held {
		t.Errorf("%d of %d held requests answered 200 after the resume", n, size.held)
	}
	ok, failed := l.stop(t)
	gaps := ss.stop(t)
	obs.stop()
	obs.log(gaps)
	t.Logf("zd-queue CPU: %v a second while relaying (baseline), %v during the dump of %v (the relaying's share of it: %v); zdctl snapshot's own CPU %v",
		time.Duration(baseRate), cpu2-cpu1, dumpWall.Round(time.Millisecond), time.Duration(baseRate*dumpWall.Seconds()).Round(time.Millisecond), zdctlCPU.Round(time.Millisecond))
	t.Logf("live snapshot of %d sessions (%d pinging every %v), %d held requests, %d connections: %d records, zdctl snapshot %v wall, zd-queue's dump %.1f ms, longest lock %.0f µs; load %d requests, %d failed; longest echo gap: baseline %v (%d echoes, %d gaps over 10 ms), during the dump %v (%d echoes, %d over 10 ms), after %v; test-migration: %d records, %d bytes, write %.1f ms, close %.1f ms, read %.1f ms, total %.1f ms, longest lock %.0f µs, longest echo gap %v (%d echoes, %d over 10 ms); load %s",
		size.sessions, size.pingers, size.interval, size.held, got["tcp-conn"], res.Records, dumpWall.Round(time.Millisecond),
		res.Queue.TookMS, res.Queue.LockMaxUS, ok, failed, gaps.max[phaseBaseline], gaps.n[phaseBaseline], gaps.over[phaseBaseline],
		gaps.max[phaseDump], gaps.n[phaseDump], gaps.over[phaseDump], gaps.max[phaseAfter],
		mt.Snapshot.Records, mt.Snapshot.Bytes, mt.Snapshot.WriteMS, mt.Snapshot.CloseMS, mt.Snapshot.ReadMS, mt.Snapshot.TotalMS, mt.Snapshot.LockMaxUS,
		gaps.max[phaseMigration], gaps.n[phaseMigration], gaps.over[phaseMigration], loadAvg())
	if failed != 0 || ok == 0 {
		t.Errorf("load: %d requests, %d failed; want some and 0 failed", ok, failed)
	}
	if gaps.n[phaseDump] == 0 {
		t.Errorf("no echo arrived during the dump")
	}
	if os.Getenv("ZD_SOAK") == "1" && gaps.max[phaseDump] > gaps.max[phaseBaseline]+10*time.Millisecond {
		t.Errorf("longest echo gap during the dump %v; the baseline's was %v: the dump stalled a session by more than 10 ms",
			gaps.max[phaseDump], gaps.max[phaseBaseline])
	}
}

// pidFile reads a pid file.
func pidFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// procCPU is the user and system CPU time pid has used (/proc/PID/stat,
// in clock ticks of 10 ms).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

// testMigration is POST /_zero-downtime/test-migration on zd-queue's admin socket.
func testMigration(t *testing.T, admin string) queueapi.MigrationTest {
	t.Helper()
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", admin)
	}}}
	resp, err := c.Post("http://zd/_zero-downtime/test-migration", "", nil)
	if err != nil {
		t.Fatalf("POST /_zero-downtime/test-migration: %v", err)
	}
	defer resp.Body.Close()
	var mt queueapi.MigrationTest
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(b, &mt)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /_zero-downtime/test-migration: %s %s (%v)", resp.Status, b, err)
	}
	return mt
}

// raiseFDLimitHard lifts the descriptor limit to at least n, the hard
// limit too when it is lower and we may (CAP_SYS_RESOURCE); children
// inherit it.
func raiseFDLimitHard(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(n) {
		return nil
	}
	if lim.Max < uint64(n) {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: uint64(n), Max: uint64(n)}); err == nil {
			return nil
		}
		return fmt.Errorf("descriptor hard limit %d is under the %d this run needs, and this process may not raise it", lim.Max, n)
	}
	lim.Cur = uint64(n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// Phases of the run, for the gap measurement.
const (
	phaseOpen int32 = iota
	phaseBaseline
	phaseDump
	phaseAfter
	phaseMigration
	phases
)

// sessions are the run's WebSocket clients.
type sessions struct {
	idle    []*websocket.Conn
	h2      *h2Idle
	pingers []*pinger
	phase   atomic.Int32
	stopc   chan struct{}
	wg      sync.WaitGroup
}

// pinger sends "pN M" every interval and checks the echoes come back in order.
type pinger struct {
	c    *websocket.Conn
	mu   sync.Mutex
	max  [phases]time.Duration // longest gap between two echoes, by the phase the second arrived in
	n    [phases]int           // echoes
	over [phases]int           // gaps over 10 ms
	sent atomic.Int64
	got  int64
	err  error
}

type gapReport struct {
	max  [phases]time.Duration
	n    [phases]int
	over [phases]int
}

func openSessions(ctx context.Context, t *testing.T, qsock string, size liveSize) *sessions {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}, HandshakeTimeout: 60 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	ss := &sessions{stopc: make(chan struct{}), h2: newH2Idle(qsock)}
	h1 := size.sessions - size.h2
	conns := make([]*websocket.Conn, h1)
	errs := make([]error, size.sessions)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range size.sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h := http.Header{"Cookie": {fmt.Sprintf("session=s%d", i)}}
			target := fmt.Sprintf("/ws?n=%d", i)
			if i >= h1 {
				errs[i] = ss.h2.open(ctx, target, h)
				return
			}
			conns[i], _, errs[i] = d.DialContext(ctx, "ws://zd"+target, h)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
			ss.h2.closeAll()
			t.Fatalf("session %d: dial through zd-queue: %v", i, err)
		}
	}
	ss.idle = conns[size.pingers:]
	for i, c := range conns[:size.pingers] {
		p := &pinger{c: c}
		ss.pingers = append(ss.pingers, p)
		ss.wg.Add(2)
		go func() { defer ss.wg.Done(); p.send(i, size.interval, ss.stopc) }()
		go func() { defer ss.wg.Done(); p.read(i, &ss.phase) }()
	}
	return ss
}

func (p *pinger) send(i int, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for n := int64(0); ; n++ {
		select {
		case <-stop:
			p.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(5*time.Second))
			return
		case <-t.C:
		}
		p.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := p.c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "p%d %d", i, n)); err != nil {
			return
		}
		p.sent.Add(1)
	}
}

func (p *pinger) read(i int, phase *atomic.Int32) {
	var last time.Time
	for n := int64(0); ; n++ {
		p.c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, msg, err := p.c.ReadMessage()
		now := time.Now()
		if err != nil {
			if !websocket.IsCloseError(err, 1000) {
				p.mu.Lock()
				p.err = fmt.Errorf("pinger %d: after %d echoes: %v", i, n, err)
				p.mu.Unlock()
			}
			return
		}
		if want := fmt.Sprintf("p%d %d", i, n); string(msg) != want {
			p.mu.Lock()
			p.err = fmt.Errorf("pinger %d: echo %q; want %q (lost, doubled or reordered)", i, msg, want)
			p.mu.Unlock()
			return
		}
		ph := phase.Load()
		p.mu.Lock()
		if !last.IsZero() {
			gap := now.Sub(last)
			p.max[ph] = max(p.max[ph], gap)
			if gap > 10*time.Millisecond {
				p.over[ph]++
			}
		}
		p.n[ph]++
		p.got = n + 1
		p.mu.Unlock()
		last = now
	}
}

// stop ends the pingers (a Close 1000 each, answered by the echo), and
// reports their gaps; a pinger that lost its session or a message fails t.
func (ss *sessions) stop(t *testing.T) gapReport {
	t.Helper()
	close(ss.stopc)
	done := make(chan struct{})
	go func() { ss.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Errorf("pingers not done 60 s after their Close")
		for _, p := range ss.pingers {
			p.c.Close()
		}
		<-done
	}
	var g gapReport
	for _, p := range ss.pingers {
		p.mu.Lock()
		if p.err != nil {
			t.Error(p.err)
		} else if p.got != p.sent.Load() {
			t.Errorf("a pinger sent %d messages and got %d echoes", p.sent.Load(), p.got)
		}
		for ph := range phases {
			g.max[ph] = max(g.max[ph], p.max[ph])
			g.n[ph] += p.n[ph]
			g.over[ph] += p.over[ph]
		}
		p.mu.Unlock()
	}
	return g
}

func (ss *sessions) closeAll() {
	for _, c := range ss.idle {
		c.Close()
	}
	ss.h2.closeAll()
	for _, p := range ss.pingers {
		p.c.Close()
	}
}

// heldRequests are POSTs pinned to a paused backend, waiting for answers.
type heldRequests struct {
	ok atomic.Int64
	wg sync.WaitGroup
}

func holdRequests(t *testing.T, qsock, backend string, n int) *heldRequests {
	h := &heldRequests{}
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}}}
	for i := range n {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://zd/held/%d?x=1", i), strings.NewReader(fmt.Sprintf("held body %d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Zd-Backend", backend)
			req.Header.Set("Authorization", "Bearer secret-"+fmt.Sprint(i))
			req.Header.Set("X-Priority", "3")
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("held request %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				h.ok.Add(1)
			} else {
				t.Errorf("held request %d: %s", i, resp.Status)
			}
		}()
	}
	return h
}

func (h *heldRequests) wait(t *testing.T) int {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Errorf("held requests not all answered 2 minutes after the resume")
	}
	return int(h.ok.Load())
}

// statusCounts are zdctl status --json's counts in snapshot kinds.
func statusCounts(t *testing.T, r *zdRun) map[string]int64 {
	t.Helper()
	out, stderr, code := r.zdctl("status", "--json")
	if code != 0 {
		t.Fatalf("zdctl status --json: exit %d: %s", code, stderr)
	}
	var st struct {
		Workers   []json.RawMessage `json:"workers"`
		Listeners []string          `json:"listeners"`
		Queue     queueapi.Status   `json:"queue"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("zdctl status --json: %v", err)
	}
	var conns int64
	for _, m := range st.Queue.ClientConns {
		for _, n := range m {
			conns += int64(n)
		}
	}
	return map[string]int64{"worker": int64(len(st.Workers)), "listener": int64(len(st.Listeners)),
		"ws-session": st.Queue.WebSocket.Sessions, "http-request": int64(st.Queue.BufferedRequests), "tcp-conn": conns}
}

// inspectCounts are zd-snapshot inspect --json's counts by kind.
func inspectCounts(t *testing.T, file string) map[string]int64 {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("zd-snapshot", "inspect", "--json", "--limit", "0", file)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("zd-snapshot inspect %s: %v: %s", file, err, out.String())
	}
	var res struct {
		ByKind map[string]int64 `json:"by_kind"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("zd-snapshot inspect --json: %v: %s", err, out.String())
	}
	return res.ByKind
}

func sameCounts(a, b map[string]int64) bool {
	for _, k := range []string{"worker", "listener", "ws-session", "http-request", "tcp-conn"} {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

// checkLiveRecords looks into the records: a plain file redacts the
// credentials, an encrypted one keeps them, and --filter selects.
func checkLiveRecords(t *testing.T, r *zdRun, size liveSize, paused string) {
	t.Helper()
	unpack := func(args ...string) []map[string]any {
		var out, errb bytes.Buffer
		cmd := exec.Command("zd-snapshot", append([]string{"unpack"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("zd-snapshot unpack %v: %v: %s", args, err, errb.String())
		}
		var recs []map[string]any
		dec := json.NewDecoder(&out)
		for dec.More() {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("zd-snapshot unpack: %v", err)
			}
			recs = append(recs, m)
		}
		return recs
	}
	header := func(rec map[string]any, name string) string {
		hs, _ := rec["headers"].([]any)
		for _, h := range hs {
			if m, _ := h.(map[string]any); strings.EqualFold(fmt.Sprint(m["name"]), name) {
				return fmt.Sprint(m["value"])
			}
		}
		return ""
	}
	var pingers, held, h2 int
	for _, rec := range unpack(filepath.Join(r.dir, "live.zds")) {
		switch rec["kind"] {
		case "ws-session":
			if rec["protocol"] == "ws-h2" {
				h2++
			}
			// The clients dial zd-queue's unix socket: their address is "@".
			if (rec["protocol"] != "ws" && rec["protocol"] != "ws-h2") || rec["method"] != "GET" || !strings.HasPrefix(fmt.Sprint(rec["target"]), "/ws?n=") ||
				header(rec, "Cookie") != "[redacted]" || rec["remote"] != "@" {
				t.Fatalf("ws-session record %v; want protocol ws or ws-h2, GET /ws?n=..., Cookie redacted, remote @", rec)
			}
			if n, _ := rec["msgs_in"].(float64); n > 0 {
				pingers++
				if rec["state"] != "active" || rec["msgs_out"] == nil || rec["worker"] == nil {
					t.Errorf("pinging session %v; want active, with messages out and a worker", rec)
				}
			}
		case "http-request":
			held++
			if rec["state"] != "held" || rec["method"] != "POST" || rec["backend"] != paused || header(rec, "Authorization") != "[redacted]" ||
				!strings.HasPrefix(fmt.Sprint(rec["target"]), "/held/") || rec["priority"] != float64(3) || rec["body"] == nil {
				t.Fatalf("http-request record %v; want held POST /held/... for %s, priority 3, a body, Authorization redacted", rec, paused)
			}
		}
	}
	// zd-snapshot inspect lists the sessions with their client's address.
	var list bytes.Buffer
	cmd := exec.Command("zd-snapshot", "inspect", "--json", "--filter", "kind=ws-session", "--limit", "3", filepath.Join(r.dir, "live.zds"))
	cmd.Stdout, cmd.Stderr = &list, &list
	var listed struct {
		First []struct{ Kind, Remote string }
	}
	if err := cmd.Run(); err != nil || json.Unmarshal(list.Bytes(), &listed) != nil || len(listed.First) != 3 {
		t.Errorf("zd-snapshot inspect --filter kind=ws-session --limit 3: %v: %s; want 3 sessions listed", err, list.String())
	}
	for _, l := range listed.First {
		if l.Kind != "ws-session" || l.Remote != "@" {
			t.Errorf("zd-snapshot inspect lists %+v; want a ws-session from @", l)
		}
	}
	if pingers != size.pingers+size.probes || held != size.held || h2 != size.h2 {
		t.Errorf("plain snapshot: %d sessions with messages, %d held requests, %d ws-h2 sessions; want %d, %d and %d", pingers, held, h2, size.pingers+size.probes, size.held, size.h2)
	}

	// Encrypted, filtered: the credentials are kept.
	key := filepath.Join(r.dir, "key")
	if out, err := exec.Command("zd-snapshot", "keygen", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("zd-snapshot keygen: %v: %s", err, out)
	}
	enc := filepath.Join(r.dir, "held.zds")
	out, stderr, code := r.zdctl("snapshot", "-k", key, "-o", enc, "--filter", "kind=http-request")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(": %d records (zd-run default, generation 1; zd-queue 0 tcp-conn, 0 ws-session, %d http-request; aes-256-gcm key id ", size.held, size.held)) {
		t.Fatalf("zdctl snapshot -k --filter kind=http-request: exit %d: %s%s", code, out, stderr)
	}
	recs := unpack("-k", key, enc)
	if len(recs) != size.held {
		t.Fatalf("encrypted snapshot of the held requests: %d records; want %d", len(recs), size.held)
	}
	for _, rec := range recs {
		if !strings.HasPrefix(header(rec, "Authorization"), "Bearer secret-") {
			t.Fatalf("encrypted http-request record %v; want its Authorization kept", rec)
		}
	}
	out, stderr, code = r.zdctl("snapshot", "-o", filepath.Join(r.dir, "active.zds"), "--filter", "kind=ws-session,state=active", "--json")
	if code != 0 {
		t.Fatalf("zdctl snapshot --filter kind=ws-session,state=active: exit %d: %s", code, stderr)
	}
	var res struct {
		Records int64 `json:"records"`
	}
	// The pingers are active; an idle session may be too within a second of
	// its handshake, but none of them is that young now.
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Records != int64(size.pingers+size.probes) {
		t.Errorf("zdctl snapshot --filter kind=ws-session,state=active: %s (%v); want %d records", out, err, size.pingers+size.probes)
	}
	// By worker: the paused backend's worker, its sessions and the
	// requests held for it, as zdctl queue status counts them.
	var pb *queueapi.BackendStatus
	qs := queueStatus(t, r)
	for i := range qs.Backends {
		if qs.Backends[i].Addr == paused {
			pb = &qs.Backends[i]
		}
	}
	if pb == nil || pb.PID == 0 {
		t.Fatalf("zdctl queue status: no worker pid for %s in %+v", paused, qs.Backends)
	}
	out, stderr, code = r.zdctl("snapshot", "-o", filepath.Join(r.dir, "worker.zds"), "--filter", fmt.Sprintf("worker=%d", pb.PID), "--json")
	var byWorker struct {
		Run   struct{ Records int64 } `json:"zd_run"`
		Queue queueapi.SnapshotResult `json:"zd_queue"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &byWorker) != nil || byWorker.Run.Records != 1 ||
		byWorker.Queue.ByKind["ws-session"] != int64(pb.WSSessions) || byWorker.Queue.ByKind["http-request"] != int64(pb.Held) || pb.Held != size.held {
		t.Errorf("zdctl snapshot --filter worker=%d: exit %d, %s%s; want its worker record, %d ws-session and %d (of %d) http-request",
			pb.PID, code, out, stderr, pb.WSSessions, pb.Held, size.held)
	}
	if _, stderr, code := r.zdctl("snapshot", "--filter", "colour=red"); code != 2 || !strings.Contains(stderr, `filter field "colour"`) {
		t.Errorf("zdctl snapshot --filter colour=red: exit %d, %q; want 2 and the field named", code, stderr)
	}
}
