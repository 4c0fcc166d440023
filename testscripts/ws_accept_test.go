package testscripts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/runapi"
)

// acceptSize is how big a WebSocket acceptance run is: small in make
// test, issue #11's full size with ZD_SOAK=1 (see bench/WS-ACCEPTANCE.md).
type acceptSize struct {
	clients   int           // per client implementation (they run at once)
	reloads   int           // per strategy
	kills     int           // kill -9 of a worker
	interval  time.Duration // between two messages of one session
	h2PerConn int           // sessions sharing one HTTP/2 connection
	h3PerConn int           // sessions sharing one HTTP/3 connection
}

func acceptSizeFromEnv(t *testing.T) acceptSize {
	if os.Getenv("ZD_SOAK") == "1" {
		// zd-queue allows 250 streams on an HTTP/2 connection and quic-go
		// 100 on an HTTP/3 one: 8 and 20 connections, each well inside.
		return acceptSize{clients: 1000, reloads: 20, kills: 5, interval: 500 * time.Millisecond, h2PerConn: 125, h3PerConn: 50}
	}
	if testing.Short() {
		t.Skip("-short: the WebSocket acceptance run takes a minute or more")
	}
	return acceptSize{clients: 50, reloads: 3, kills: 2, interval: 100 * time.Millisecond, h2PerConn: 25, h3PerConn: 25}
}

// TestWebSocketAcceptance is issue #11's HTTP/1.1 acceptance run: clients
// of two implementations independent of zd-queue's relay and of the example
// app's coder/websocket (gorilla/websocket in this process, npm ws in a Node
// process, at the same time) send numbered messages to examples/echo's /ws
// through zd-queue, each checking every echo, while zdctl reloads the
// workers: rolling, blue-green and blue-green --exclusive, then a worker
// is killed with SIGKILL now and then (runAcceptance).
//
// What must hold, as pkg/wsrelay's doc promises: through the reloads no
// session closes and no message is lost, duplicated or reordered; through
// the kills the sessions stay open and are re-attached, nothing is
// duplicated or reordered, and a message is lost only if it was sent while
// a worker was being killed (what the dead process had read and not
// answered; nobody can know which). ZD_SOAK=1 runs the full size: 1,000
// clients of each, 20 reloads per strategy, 5 kills.
// TestWebSocketAcceptanceH2H3 is the same run over HTTP/2 and HTTP/3.
func TestWebSocketAcceptance(t *testing.T) {
	size := acceptSizeFromEnv(t)
	if err := raiseFDLimit(4*size.clients + 1000); err != nil {
		t.Skip(err)
	}
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	r.waitHealthy()
	admin := filepath.Join(filepath.Dir(r.dir), "admin.sock")
	qsock := r.startZdQueue("--admin", "unix://"+admin)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()

	gc := startGoClients(ctx, t, "gorilla/websocket", "h1", "g", size, gorillaDialer(qsock))
	defer gc.abort()
	nc := startNodeClients(ctx, t, "npm ws", "h1", "ws+unix://"+qsock+":/ws", "n", size, 1)
	t.Logf("%d Go and %d Node sessions open after %v", gc.sessions(), nc.sessions(), time.Since(start).Round(time.Millisecond))
	runAcceptance(t, r, admin, size, start, gc, nc)
}

// acceptGroup is the sessions of one client implementation in an
// acceptance run: goClients (in this process) or nodeClients.
type acceptGroup interface {
	label() string    // the implementation, for the log
	protocol() string // h1, h2 or h3, as zd-queue counts its sessions
	sessions() int    // 0: the group does not run (no node)
	// mark ends a phase: it waits (bounded) until every message sent
	// before it was echoed or overtaken; an error if not.
	mark(t *testing.T)
	// sync waits (bounded) until every open session had an echo since
	// the call; the test ends if not.
	sync(t *testing.T)
	kill(k killWindow)
	// stop ends sending, waits (bounded) for the last echoes, closes every
	// session with 1000 and returns the books.
	stop(t *testing.T, kills []killWindow) acceptResult
}

// runAcceptance is the acceptance run once groups' sessions are open
// through zd-queue (admin is its admin socket) in front of r: checks that
// zdctl and the admin endpoints count them by protocol, size.reloads
// zdctl reloads each of rolling, blue-green and blue-green --exclusive
// (every session echoes on its new backend before the next), size.kills
// kill -9 of a ready worker, then the books: no early close, nothing
// duplicated, reordered or changed, nothing lost but in the kills and
// there only what was sent while a worker was being killed; zd-queue moved
// sessions and none failed to move.
func runAcceptance(t *testing.T, r *zdRun, admin string, size acceptSize, start time.Time, groups ...acceptGroup) {
	t.Helper()
	protos := map[string]int{}
	total := 0
	for _, g := range groups {
		if n := g.sessions(); n > 0 {
			protos[g.protocol()] += n
			total += n
		}
	}
	waitQueue(t, r, "every session attached", 2*time.Minute, func(st queueapi.Status) bool {
		return st.WebSocket.Sessions == int64(total)
	})
	checkVisible(t, r, admin, protos)

	phases := []string{"rolling", "blue-green", "blue-green --exclusive", "kill -9"}
	sync := func() {
		t.Helper()
		for _, g := range groups {
			g.sync(t)
		}
	}
	for _, phase := range phases[:3] {
		args := strings.Fields("--strategy " + phase)
		t0 := time.Now()
		for range size.reloads {
			r.reload(args...)
			// Every session passes a message on its new backend before
			// the next reload.
			sync()
		}
		for _, g := range groups {
			g.mark(t)
		}
		t.Logf("%d reloads %s in %v; %s", size.reloads, phase, time.Since(t0).Round(time.Millisecond), wsLine(r))
	}

	var kills []killWindow
	t0 := time.Now()
	for i := range size.kills {
		st := r.waitHealthy()
		w := readyWorker(st, i)
		if w == nil {
			t.Fatalf("kill %d: no ready worker in %+v", i+1, st.Workers)
		}
		t.Logf("kill %d: worker %d (pid %d), sessions on it: %s", i+1, w.Slot, w.PID, slotSessions(admin, w.Slot))
		from := time.Now().UnixMilli()
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 worker %d (pid %d): %v", w.Slot, w.PID, err)
		}
		waitCond(t, fmt.Sprintf("worker pid %d gone after SIGKILL", w.PID), 30*time.Second, func() bool { return !alive(w.PID) })
		// The margins: a message the dead worker had read may have been
		// sent well before the signal on a loaded machine; one the kernel
		// took for its socket just before the socket closed, right after.
		k := killWindow{from: from - 5000, to: time.Now().UnixMilli() + 1000}
		kills = append(kills, k)
		for _, g := range groups {
			g.kill(k)
		}
		sync()
		waitQueue(t, r, "no session moving after the kill", 2*time.Minute, func(st queueapi.Status) bool {
			return st.WebSocket.Moving == 0 && st.WebSocket.Sessions == int64(total)
		})
	}
	r.waitHealthy()
	for _, g := range groups {
		g.mark(t)
	}
	t.Logf("%d kills in %v; %s", size.kills, time.Since(t0).Round(time.Millisecond), wsLine(r))

	results := make([]acceptResult, len(groups))
	for i, g := range groups {
		results[i] = g.stop(t, kills)
	}
	qst := queueStatus(t, r)
	t.Logf("run took %v, load average %s", time.Since(start).Round(time.Second), loadAvg())
	for i, g := range groups {
		res, name := results[i], g.label()+" ("+g.protocol()+")"
		if res.Sessions == 0 {
			continue
		}
		t.Logf("%s: %d/%d sessions, %d sent, %d echoed; lost by phase %v (%s, tail), %d unexplained; %d duplicated, %d reordered, %d mismatched; closes %v",
			name, res.Opened, res.Sessions, res.Sent, res.Echoed, res.Lost, strings.Join(phases, ", "),
			res.LostUnexplained, res.Duplicated, res.Reordered, res.Mismatched, res.Closes)
		if len(res.Closes) != 0 || res.Opened != res.Sessions {
			t.Errorf("%s: sessions ended early: %v (%d of %d opened); errors %v", name, res.Closes, res.Opened, res.Sessions, res.Errors)
		}
		if res.Duplicated+res.Reordered+res.Mismatched != 0 {
			t.Errorf("%s: %d duplicated, %d reordered, %d mismatched; want none; errors %v", name, res.Duplicated, res.Reordered, res.Mismatched, res.Errors)
		}
		for i, n := range res.Lost {
			if n != 0 && i != len(phases)-1 {
				t.Errorf("%s: %d messages lost in phase %d (%s); only a kill -9 may lose any", name, n, i, append(phases, "tail")[i])
			}
		}
		if res.LostUnexplained != 0 {
			t.Errorf("%s: %d lost messages were not sent while a worker was being killed", name, res.LostUnexplained)
		}
		if res.Sent == 0 || res.Echoed == 0 {
			t.Errorf("%s: %d sent, %d echoed: the run proves nothing", name, res.Sent, res.Echoed)
		}
	}
	ws := qst.WebSocket
	if ws.Moved == 0 || ws.MoveFailed != 0 {
		t.Errorf("zd-queue: %d moves, %d failed; want moves and no failure", ws.Moved, ws.MoveFailed)
	}
	t.Logf("zd-queue: %d moved, %d could not move; %s", ws.Moved, ws.MoveFailed, metricLines(admin, "zdqueue_ws_closes_total", "zdqueue_ws_lost_in_flight_total", "zdqueue_ws_move_seconds_count", "zdqueue_ws_move_seconds_sum"))
}

// checkVisible: zdctl status, zdctl queue status, /_zero-downtime/status
// and /metrics all count the open sessions, by protocol (protos) and
// backend.
func checkVisible(t *testing.T, r *zdRun, admin string, protos map[string]int) {
	t.Helper()
	n := 0
	keys := make([]string, 0, len(protos))
	for p, k := range protos {
		n += k
		keys = append(keys, p)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, p := range keys {
		parts[i] = fmt.Sprintf("%s %d", p, protos[p])
	}
	want := fmt.Sprintf("websocket: %d sessions (%s)", n, strings.Join(parts, ", "))
	out, _, _ := r.zdctl("status")
	if !strings.Contains(out, want) {
		t.Errorf("zdctl status has no %q:\n%s", want, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if w := utf8.RuneCountInString(l); w > 80 {
			t.Errorf("zdctl status: a line of %d columns: %q", w, l)
		}
	}
	t.Logf("zdctl status: %s", firstLine(out, "websocket: "))
	out, _, _ = r.zdctl("queue", "status")
	if !strings.Contains(out, want) {
		t.Errorf("zdctl queue status has no %q:\n%s", want, out)
	}
	perBackend := 0
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, ", WebSocket sessions "); strings.HasPrefix(l, "backend ") && i > 0 {
			var k int
			fmt.Sscanf(l[i:], ", WebSocket sessions %d", &k)
			perBackend += k
		}
	}
	if perBackend != n {
		t.Errorf("zdctl queue status: the backends' sessions add up to %d; want %d:\n%s", perBackend, n, out)
	}
	body, err := adminGet(admin, "/_zero-downtime/status")
	var st queueapi.Status
	if err == nil {
		err = json.Unmarshal([]byte(body), &st)
	}
	if err != nil || st.WebSocket.Sessions != int64(n) || fmt.Sprint(st.WebSocket.Protocols) != fmt.Sprint(toInt64(protos)) {
		t.Errorf("/_zero-downtime/status: websocket %+v, %v; want %d sessions, by protocol %v", st.WebSocket, err, n, protos)
	}
	m := metricLines(admin, "zdqueue_ws_backend_sessions{")
	sums := map[string]int{}
	for _, l := range strings.Split(m, "; ") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		for _, p := range keys {
			if strings.Contains(f[0], `protocol="`+p+`"`) {
				v, _ := strconv.Atoi(f[1])
				sums[p] += v
			}
		}
	}
	if fmt.Sprint(sums) != fmt.Sprint(protos) {
		t.Errorf("/metrics: zdqueue_ws_backend_sessions add up to %v by protocol; want %v: %s", sums, protos, m)
	}
}

// slotSessions is how many sessions zd-queue has on slot's backend, by
// client protocol, as /metrics counts them.
func slotSessions(admin string, slot int) string {
	var parts []string
	for _, l := range strings.Split(metricLines(admin, fmt.Sprintf("zdqueue_ws_backend_sessions{backend=\"slot:%d\"", slot)), "; ") {
		_, rest, ok := strings.Cut(l, `protocol="`)
		proto, n, ok2 := strings.Cut(rest, `"} `)
		if ok && ok2 {
			parts = append(parts, proto+" "+n)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func toInt64(m map[string]int) map[string]int64 {
	o := make(map[string]int64, len(m))
	for k, v := range m {
		o[k] = int64(v)
	}
	return o
}

// raiseFDLimit lifts the soft descriptor limit to at least n.
func raiseFDLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(n) {
		return nil
	}
	if lim.Max < uint64(n) {
		return fmt.Errorf("descriptor hard limit %d is under the %d this run needs", lim.Max, n)
	}
	lim.Cur = uint64(n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func readyWorker(st runapi.Status, i int) *runapi.Worker {
	var ready []*runapi.Worker
	for j := range st.Workers {
		if st.Workers[j].State == "ready" {
			ready = append(ready, &st.Workers[j])
		}
	}
	if len(ready) == 0 {
		return nil
	}
	return ready[i%len(ready)]
}

func waitCond(t *testing.T, what string, bound time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(bound); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
	}
}

func queueStatus(t *testing.T, r *zdRun) queueapi.Status {
	t.Helper()
	out, stderr, code := r.zdctl("queue", "status", "--json")
	var st queueapi.Status
	if code != 0 {
		t.Fatalf("zdctl queue status: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("zdctl queue status --json: %v", err)
	}
	return st
}

func waitQueue(t *testing.T, r *zdRun, what string, bound time.Duration, ok func(queueapi.Status) bool) {
	t.Helper()
	var last queueapi.Status
	for deadline := time.Now().Add(bound); ; time.Sleep(50 * time.Millisecond) {
		if last = queueStatus(t, r); ok(last) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("zd-queue: %s not seen within %v (websocket %+v)", what, bound, last.WebSocket)
		}
	}
}

func wsLine(r *zdRun) string {
	out, _, _ := r.zdctl("queue", "status")
	return firstLine(out, "websocket: ")
}

// metricLines are the lines of zd-queue's /metrics (on its admin socket)
// for the named metrics.
func metricLines(admin string, names ...string) string {
	out, err := adminGet(admin, "/metrics")
	if err != nil {
		return "metrics: " + err.Error()
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		for _, n := range names {
			if strings.HasPrefix(l, n) {
				keep = append(keep, l)
			}
		}
	}
	return strings.Join(keep, "; ")
}

// adminGet is the body of GET path on zd-queue's admin socket.
func adminGet(admin, path string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", admin)
	}}}
	resp, err := c.Get("http://zd" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ") + " (" + strconv.Itoa(runtime.NumCPU()) + " CPUs)"
}

// acceptConn is one session of goClients: gorilla/websocket's over
// HTTP/1.1 (gorillaConn) or coder/websocket's over HTTP/3 (h3Conn).
type acceptConn interface {
	write(p []byte) error // one text message, bounded
	read() ([]byte, error)
	closeCode(err error) int // the close code a read error carries, or -1
	close() error            // the close handshake, 1000
	abort()                  // drop the connection
}

// goClients are sessions driven from this process.
type goClients struct {
	name, proto string
	prefix      string // of each session's id
	size        acceptSize
	conns       []acceptConn
	books       []*tally
	ended       []atomic.Value // why a session ended early ("" while open)
	stopC       chan struct{}
	writers     sync.WaitGroup
	wg          sync.WaitGroup // the readers, and stop's closes
	closed      atomic.Int64
}

var _ acceptGroup = (*goClients)(nil)

// startGoClients opens size.clients sessions with dial (one after the
// other, i counting from 0) and starts their writers and readers.
func startGoClients(ctx context.Context, t *testing.T, name, proto, prefix string, size acceptSize, dial func(ctx context.Context, i int) (acceptConn, error)) *goClients {
	t.Helper()
	g := &goClients{name: name, proto: proto, prefix: prefix, size: size, stopC: make(chan struct{}), ended: make([]atomic.Value, size.clients)}
	for i := range size.clients {
		c, err := dial(ctx, i)
		if err != nil {
			g.abort()
			t.Fatalf("%s client %d: dial through zd-queue: %v", name, i, err)
		}
		g.conns = append(g.conns, c)
		g.books = append(g.books, newTally())
	}
	for i, c := range g.conns {
		id, bk := fmt.Sprintf("%s%d", prefix, i), g.books[i]
		g.writers.Add(1)
		g.wg.Add(1)
		go func() { // writer: open loop, one message per interval
			defer g.writers.Done()
			// A random phase per session, as the Node clients have: the
			// sessions do not send in step.
			select {
			case <-g.stopC:
				return
			case <-time.After(rand.N(size.interval)):
			}
			tick := time.NewTicker(size.interval)
			defer tick.Stop()
			for {
				select {
				case <-g.stopC:
					return
				case <-tick.C:
				}
				if g.ended[i].Load() != nil {
					return
				}
				n := bk.next()
				if err := c.write([]byte(acceptMsg(id, n))); err != nil {
					g.ended[i].CompareAndSwap(nil, "write: "+err.Error())
					return
				}
			}
		}()
		go func() { // reader: every echo checked
			defer g.wg.Done()
			for {
				p, err := c.read()
				if err != nil {
					code := c.closeCode(err)
					select {
					case <-g.stopC:
						if code == 1000 {
							g.closed.Add(1)
							return
						}
					default:
					}
					why := err.Error()
					if code >= 0 {
						why = strconv.Itoa(code)
					}
					g.ended[i].CompareAndSwap(nil, why)
					return
				}
				bk.echo(id, string(p))
			}
		}()
	}
	return g
}

func (g *goClients) label() string     { return g.name }
func (g *goClients) protocol() string  { return g.proto }
func (g *goClients) sessions() int     { return len(g.conns) }
func (g *goClients) kill(_ killWindow) {} // stop is given them all

func (g *goClients) mark(t *testing.T) {
	t.Helper()
	for _, b := range g.books {
		b.mark()
	}
	if !g.waitCaughtUp(2 * time.Minute) {
		t.Errorf("%s: the echoes did not catch up within 2m", g.name)
	}
}

// sync waits (2 min) until every open session had an echo since the call.
func (g *goClients) sync(t *testing.T) {
	t.Helper()
	at := make([]int, len(g.books))
	for i, b := range g.books {
		at[i] = b.echoCount()
	}
	waitCond(t, "an echo on every "+g.name+" session", 2*time.Minute, func() bool {
		for i, b := range g.books {
			if g.ended[i].Load() == nil && b.echoCount() <= at[i] {
				return false
			}
		}
		return true
	})
}

func (g *goClients) waitCaughtUp(bound time.Duration) bool {
	for deadline := time.Now().Add(bound); ; time.Sleep(50 * time.Millisecond) {
		ok := true
		for i, b := range g.books {
			if g.ended[i].Load() == nil && !b.caughtUp() {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// stop ends sending, waits (bounded) for the last echoes, closes every
// session with 1000 and returns the books.
func (g *goClients) stop(t *testing.T, kills []killWindow) acceptResult {
	close(g.stopC)
	// No message after the last mark: a writer whose tick came with the
	// stop could send one, and a close handshake begun before its echo
	// came would lose it (coder/websocket's Close discards what it reads).
	wdone := make(chan struct{})
	go func() { g.writers.Wait(); close(wdone) }()
	select {
	case <-wdone:
	case <-time.After(2 * time.Minute):
		t.Errorf("%s: writers not done within 2m of the stop", g.name)
	}
	for _, b := range g.books {
		b.mark()
	}
	if !g.waitCaughtUp(time.Minute) {
		t.Errorf("%s: the last echoes did not come within 1m", g.name)
	}
	// All close handshakes at once: coder/websocket's Close waits for the
	// answer.
	for i, c := range g.conns {
		if g.ended[i].Load() == nil {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				c.close()
			}()
		}
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Errorf("%s: %d of %d close handshakes not done within 1m", g.name, int64(len(g.conns))-g.closed.Load(), len(g.conns))
		g.abort()
		<-done
	}
	res := acceptResult{Sessions: len(g.conns), Opened: len(g.conns), Closes: map[string]int{}}
	for i, b := range g.books {
		b.add(&res, kills)
		if why, _ := g.ended[i].Load().(string); why != "" {
			res.Closes[why]++
			if len(res.Errors) < 20 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s%d: %s", g.prefix, i, why))
			}
		}
	}
	// stop's own mark is no phase: fold its empty share into the tail.
	if n := len(res.Lost); n > 1 {
		res.Lost[n-2] += res.Lost[n-1]
		res.Lost = res.Lost[:n-1]
	}
	return res
}

func (g *goClients) abort() {
	for _, c := range g.conns {
		c.abort()
	}
}

// gorillaDialer dials gorilla/websocket sessions to zd-queue's socket
// qsock, permessage-deflate offered.
func gorillaDialer(qsock string) func(context.Context, int) (acceptConn, error) {
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}, HandshakeTimeout: 60 * time.Second, EnableCompression: true}
	return func(ctx context.Context, _ int) (acceptConn, error) {
		c, _, err := d.DialContext(ctx, "ws://zd/ws", nil)
		if err != nil {
			return nil, err
		}
		return gorillaConn{c}, nil
	}
}

type gorillaConn struct{ c *websocket.Conn }

func (c gorillaConn) write(p []byte) error {
	c.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	return c.c.WriteMessage(websocket.TextMessage, p)
}

func (c gorillaConn) read() ([]byte, error) {
	_, p, err := c.c.ReadMessage()
	return p, err
}

func (c gorillaConn) closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func (c gorillaConn) close() error {
	return c.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(10*time.Second))
}

func (c gorillaConn) abort() { c.c.NetConn().Close() }

// nodeClients is the Node process of testdata/node/wsaccept.js; with no
// node or no ws module its methods do nothing (the test says so).
type nodeClients struct {
	name, proto string
	n           int // sessions
	cmd         *exec.Cmd
	in          io.WriteCloser
	lines       chan string
}

var _ acceptGroup = (*nodeClients)(nil)

// startNodeClients starts wsaccept.js with size.clients sessions to url
// (its forms are in the script), perConn to an HTTP/2 connection, their
// ids starting with prefix, and waits until they are open.
func startNodeClients(ctx context.Context, t *testing.T, name, proto, url, prefix string, size acceptSize, perConn int) *nodeClients {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("ZD_SOAK") == "1" {
			t.Fatal("ZD_SOAK=1 needs node: install nodejs and run npm ci in pkg/wsrelay/testdata/node")
		}
		t.Log("node not found: only the Go clients run (install nodejs, npm ci in pkg/wsrelay/testdata/node)")
		return &nodeClients{name: name, proto: proto}
	}
	mods, _ := filepath.Abs("../pkg/wsrelay/testdata/node/node_modules")
	if _, err := os.Stat(filepath.Join(mods, "ws")); err != nil {
		if os.Getenv("ZD_SOAK") == "1" {
			t.Fatal("ZD_SOAK=1 needs npm's ws: run npm ci in pkg/wsrelay/testdata/node")
		}
		t.Log("npm package ws missing: only the Go clients run (npm ci in pkg/wsrelay/testdata/node, as .ci/run does)")
		return &nodeClients{name: name, proto: proto}
	}
	script, _ := filepath.Abs("testdata/node/wsaccept.js")
	n := &nodeClients{name: name, proto: proto, n: size.clients, lines: make(chan string, 16)}
	n.cmd = exec.CommandContext(ctx, node, script, url, strconv.Itoa(size.clients), strconv.Itoa(int(size.interval.Milliseconds())), prefix, strconv.Itoa(perConn))
	n.cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	n.cmd.Stderr = os.Stderr
	n.in, _ = n.cmd.StdinPipe()
	out, _ := n.cmd.StdoutPipe()
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		n.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
		close(n.lines)
	}()
	if l := n.line(t, 3*time.Minute); l != "ready" {
		t.Fatalf("node clients: %q; want ready", l)
	}
	return n
}

func (n *nodeClients) label() string    { return n.name }
func (n *nodeClients) protocol() string { return n.proto }

func (n *nodeClients) sessions() int {
	if n.cmd == nil {
		return 0
	}
	return n.n
}

func (n *nodeClients) line(t *testing.T, bound time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-n.lines:
		if !ok {
			t.Fatal("node clients: exited early (see stderr)")
		}
		return l
	case <-time.After(bound):
		t.Fatalf("node clients: no answer within %v", bound)
	}
	return ""
}

func (n *nodeClients) mark(t *testing.T) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	io.WriteString(n.in, "mark\n")
	if l := n.line(t, 3*time.Minute); l != "marked" {
		t.Errorf("node clients: %q; want marked (their echoes did not catch up within 2m)", l)
	}
}

func (n *nodeClients) sync(t *testing.T) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	io.WriteString(n.in, "sync\n")
	if l := n.line(t, 3*time.Minute); l != "synced" {
		t.Fatalf("node clients: %q; want synced (a session had no echo within 2m)", l)
	}
}

func (n *nodeClients) kill(k killWindow) {
	if n.cmd != nil {
		fmt.Fprintf(n.in, "kill %d %d\n", k.from, k.to)
	}
}

// stop: the kill windows were given to the script as they came.
func (n *nodeClients) stop(t *testing.T, _ []killWindow) acceptResult {
	t.Helper()
	var res acceptResult
	if n.cmd == nil {
		return res
	}
	io.WriteString(n.in, "stop\n")
	l := n.line(t, 3*time.Minute)
	if err := json.Unmarshal([]byte(l), &res); err != nil {
		t.Fatalf("node clients: %v in %q", err, l)
	}
	return res
}
