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

// acceptSize is how big the WebSocket acceptance run is: small in make
// test, issue #11's full size with ZD_SOAK=1 (see bench/WS-RESULTS.md).
type acceptSize struct {
	clients  int           // per client implementation (Go and Node run at once)
	reloads  int           // per strategy
	kills    int           // kill -9 of a worker
	interval time.Duration // between two messages of one session
}

func acceptSizeFromEnv(t *testing.T) acceptSize {
	if os.Getenv("ZD_SOAK") == "1" {
		return acceptSize{clients: 1000, reloads: 20, kills: 5, interval: 500 * time.Millisecond}
	}
	if testing.Short() {
		t.Skip("-short: the WebSocket acceptance run takes a minute or more")
	}
	return acceptSize{clients: 50, reloads: 3, kills: 2, interval: 100 * time.Millisecond}
}

// TestWebSocketAcceptance is issue #11's HTTP/1.1 acceptance run: clients
// of two implementations independent of zd-queue's relay and of the example
// app's coder/websocket (gorilla/websocket in this process, npm ws in a Node
// process, at the same time) send numbered messages to examples/echo's /ws
// through zd-queue, each checking every echo, while zdctl reloads the
// workers: rolling, blue-green and blue-green --exclusive, then a worker
// is killed with SIGKILL now and then.
//
// What must hold, as pkg/wsrelay's doc promises: through the reloads no
// session closes and no message is lost, duplicated or reordered; through
// the kills the sessions stay open and are re-attached, nothing is
// duplicated or reordered, and a message is lost only if it was sent while
// a worker was being killed (what the dead process had read and not
// answered; nobody can know which). ZD_SOAK=1 runs the full size: 1,000
// clients of each, 20 reloads per strategy, 5 kills.
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

	gc := startGoClients(ctx, t, qsock, size)
	defer gc.abort()
	nc := startNodeClients(ctx, t, qsock, size)
	t.Logf("%d Go and %d Node sessions open after %v", size.clients, nodeCount(nc, size), time.Since(start).Round(time.Millisecond))
	waitQueue(t, r, "every session attached", 2*time.Minute, func(st queueapi.Status) bool {
		return st.WebSocket.Sessions == int64(size.clients+nodeCount(nc, size))
	})

	checkVisible(t, r, admin, size.clients+nodeCount(nc, size))

	phases := []string{"rolling", "blue-green", "blue-green --exclusive", "kill -9"}
	mark := func(phase string) {
		t.Helper()
		gc.mark()
		nc.mark(t)
		if !gc.waitCaughtUp(2 * time.Minute) {
			t.Errorf("after %s: the Go clients' echoes did not catch up within 2m", phase)
		}
	}
	sync := func() {
		t.Helper()
		gc.sync(t)
		nc.sync(t)
	}
	for _, phase := range phases[:3] {
		args := append([]string{"reload"}, strings.Fields("--strategy "+phase)...)
		t0 := time.Now()
		for i := range size.reloads {
			if _, stderr, code := r.zdctl(args...); code != 0 {
				t.Fatalf("zdctl %s (%d of %d): exit %d: %s", strings.Join(args, " "), i+1, size.reloads, code, stderr)
			}
			// Every session passes a message on its new backend before
			// the next reload.
			sync()
		}
		mark(phase)
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
		nc.kill(k)
		sync()
		waitQueue(t, r, "no session moving after the kill", 2*time.Minute, func(st queueapi.Status) bool {
			return st.WebSocket.Moving == 0 && st.WebSocket.Sessions == int64(size.clients+nodeCount(nc, size))
		})
	}
	r.waitHealthy()
	mark(phases[3])
	t.Logf("%d kills in %v; %s", size.kills, time.Since(t0).Round(time.Millisecond), wsLine(r))

	gres := gc.stop(t, kills)
	nres := nc.stop(t)
	qst := queueStatus(t, r)
	load := loadAvg()
	t.Logf("run took %v, load average %s", time.Since(start).Round(time.Second), load)
	for _, res := range []struct {
		name string
		acceptResult
	}{{"gorilla/websocket", gres}, {"node ws", nres}} {
		if res.Sessions == 0 {
			continue
		}
		t.Logf("%s: %d/%d sessions, %d sent, %d echoed; lost by phase %v (%s, tail), %d unexplained; %d duplicated, %d reordered, %d mismatched; closes %v",
			res.name, res.Opened, res.Sessions, res.Sent, res.Echoed, res.Lost, strings.Join(phases, ", "),
			res.LostUnexplained, res.Duplicated, res.Reordered, res.Mismatched, res.Closes)
		if len(res.Closes) != 0 || res.Opened != res.Sessions {
			t.Errorf("%s: sessions ended early: %v (%d of %d opened); errors %v", res.name, res.Closes, res.Opened, res.Sessions, res.Errors)
		}
		if res.Duplicated+res.Reordered+res.Mismatched != 0 {
			t.Errorf("%s: %d duplicated, %d reordered, %d mismatched; want none; errors %v", res.name, res.Duplicated, res.Reordered, res.Mismatched, res.Errors)
		}
		for i, n := range res.Lost {
			if n != 0 && i != 3 {
				t.Errorf("%s: %d messages lost in phase %d (%s); only a kill -9 may lose any", res.name, n, i, append(phases, "tail")[i])
			}
		}
		if res.LostUnexplained != 0 {
			t.Errorf("%s: %d lost messages were not sent while a worker was being killed", res.name, res.LostUnexplained)
		}
		if res.Sent == 0 || res.Echoed == 0 {
			t.Errorf("%s: %d sent, %d echoed: the run proves nothing", res.name, res.Sent, res.Echoed)
		}
	}
	ws := qst.WebSocket
	if ws.Moved == 0 || ws.MoveFailed != 0 {
		t.Errorf("zd-queue: %d moves, %d failed; want moves and no failure", ws.Moved, ws.MoveFailed)
	}
	t.Logf("zd-queue: %d moved, %d could not move; %s", ws.Moved, ws.MoveFailed, metricLines(admin, "zdqueue_ws_closes_total", "zdqueue_ws_lost_in_flight_total", "zdqueue_ws_move_seconds_count", "zdqueue_ws_move_seconds_sum"))
}

// checkVisible: zdctl status, zdctl queue status, /_zero-downtime/status
// and /metrics all count the n open sessions, by protocol and backend.
func checkVisible(t *testing.T, r *zdRun, admin string, n int) {
	t.Helper()
	want := fmt.Sprintf("websocket: %d sessions (h1 %d)", n, n)
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
	if err != nil || st.WebSocket.Sessions != int64(n) || st.WebSocket.Protocols["h1"] != int64(n) {
		t.Errorf("/_zero-downtime/status: websocket %+v, %v; want %d sessions, all h1", st.WebSocket, err, n)
	}
	m := metricLines(admin, "zdqueue_ws_backend_sessions{")
	sum := 0
	for _, l := range strings.Split(m, "; ") {
		if f := strings.Fields(l); len(f) == 2 && strings.Contains(f[0], `protocol="h1"`) {
			v, _ := strconv.Atoi(f[1])
			sum += v
		}
	}
	if sum != n {
		t.Errorf("/metrics: zdqueue_ws_backend_sessions add up to %d; want %d: %s", sum, n, m)
	}
}

func nodeCount(nc *nodeClients, size acceptSize) int {
	if nc.cmd == nil {
		return 0
	}
	return size.clients
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

// goClients are the gorilla/websocket sessions.
type goClients struct {
	size   acceptSize
	conns  []*websocket.Conn
	books  []*tally
	ended  []atomic.Value // why a session ended early ("" while open)
	stopC  chan struct{}
	wg     sync.WaitGroup
	closed atomic.Int64
}

func startGoClients(ctx context.Context, t *testing.T, qsock string, size acceptSize) *goClients {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}, HandshakeTimeout: 60 * time.Second, EnableCompression: true}
	g := &goClients{size: size, stopC: make(chan struct{}), ended: make([]atomic.Value, size.clients)}
	for i := range size.clients {
		c, _, err := d.DialContext(ctx, "ws://zd/ws", nil)
		if err != nil {
			g.abort()
			t.Fatalf("Go client %d: dial through zd-queue: %v", i, err)
		}
		g.conns = append(g.conns, c)
		g.books = append(g.books, newTally())
	}
	for i, c := range g.conns {
		id, bk := fmt.Sprintf("g%d", i), g.books[i]
		var wmu sync.Mutex
		g.wg.Add(2)
		go func() { // writer: open loop, one message per interval
			defer g.wg.Done()
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
				wmu.Lock()
				n := bk.next()
				c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				err := c.WriteMessage(websocket.TextMessage, []byte(acceptMsg(id, n)))
				wmu.Unlock()
				if err != nil {
					g.ended[i].CompareAndSwap(nil, "write: "+err.Error())
					return
				}
			}
		}()
		go func() { // reader: every echo checked
			defer g.wg.Done()
			for {
				_, p, err := c.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					select {
					case <-g.stopC:
						if errors.As(err, &ce) && ce.Code == 1000 {
							g.closed.Add(1)
							return
						}
					default:
					}
					why := err.Error()
					if errors.As(err, &ce) {
						why = strconv.Itoa(ce.Code)
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

func (g *goClients) mark() {
	for _, b := range g.books {
		b.mark()
	}
}

// sync waits (2 min) until every open session had an echo since the call.
func (g *goClients) sync(t *testing.T) {
	t.Helper()
	at := make([]int, len(g.books))
	for i, b := range g.books {
		at[i] = b.echoCount()
	}
	waitCond(t, "an echo on every Go session", 2*time.Minute, func() bool {
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
	g.mark()
	if !g.waitCaughtUp(time.Minute) {
		t.Errorf("Go clients: the last echoes did not come within 1m")
	}
	for i, c := range g.conns {
		if g.ended[i].Load() == nil {
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(10*time.Second))
		}
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Errorf("Go clients: %d of %d close handshakes not done within 1m", int64(len(g.conns))-g.closed.Load(), len(g.conns))
		g.abort()
		<-done
	}
	res := acceptResult{Sessions: len(g.conns), Opened: len(g.conns), Closes: map[string]int{}}
	for i, b := range g.books {
		b.add(&res, kills)
		if why, _ := g.ended[i].Load().(string); why != "" {
			res.Closes[why]++
			if len(res.Errors) < 20 {
				res.Errors = append(res.Errors, fmt.Sprintf("g%d: %s", i, why))
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
		c.NetConn().Close()
	}
}

// nodeClients is the Node process of testdata/node/wsaccept.js; with no
// node or no ws module its methods do nothing (the test says so).
type nodeClients struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startNodeClients(ctx context.Context, t *testing.T, qsock string, size acceptSize) *nodeClients {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("ZD_SOAK") == "1" {
			t.Fatal("ZD_SOAK=1 needs node: install nodejs and run npm ci in pkg/wsrelay/testdata/node")
		}
		t.Log("node not found: only the Go clients run (install nodejs, npm ci in pkg/wsrelay/testdata/node)")
		return &nodeClients{}
	}
	mods, _ := filepath.Abs("../pkg/wsrelay/testdata/node/node_modules")
	if _, err := os.Stat(filepath.Join(mods, "ws")); err != nil {
		if os.Getenv("ZD_SOAK") == "1" {
			t.Fatal("ZD_SOAK=1 needs npm's ws: run npm ci in pkg/wsrelay/testdata/node")
		}
		t.Log("npm package ws missing: only the Go clients run (npm ci in pkg/wsrelay/testdata/node, as .ci/run does)")
		return &nodeClients{}
	}
	script, _ := filepath.Abs("testdata/node/wsaccept.js")
	n := &nodeClients{lines: make(chan string, 16)}
	n.cmd = exec.CommandContext(ctx, node, script, "ws+unix://"+qsock+":/ws", strconv.Itoa(size.clients), strconv.Itoa(int(size.interval.Milliseconds())), "n")
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

func (n *nodeClients) stop(t *testing.T) acceptResult {
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
