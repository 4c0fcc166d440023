package testscripts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"
)

// pushApp is a WebSocket backend for the resumption tests, independent of
// zd-queue's relay: it numbers every message it sends to a session
// ("s<k> ..."), pushes "s<k> push" every `every` up to `pushes` on its own
// (so messages go on while the client is away), answers each client
// message m with "s<k> echo m", and records what it got from each session
// (by Zd-Session-Id) to check that nothing was lost or doubled.
type pushApp struct {
	sock   string
	pushes int
	every  time.Duration

	files map[string][]byte // served at their paths besides /ws (a page and its script)

	mu    sync.Mutex
	got   map[string][]string
	sent  map[string]int
	ended map[string]int // close code the backend saw (-1: dropped)
}

// startPushApp starts one on a unix socket in dir; files (nil for none)
// are served at their paths too, for a browser.
func startPushApp(t *testing.T, dir string, pushes int, every time.Duration, files map[string][]byte) *pushApp {
	t.Helper()
	a := &pushApp{sock: filepath.Join(dir, "push.sock"), pushes: pushes, every: every, files: files,
		got: map[string][]string{}, sent: map[string]int{}, ended: map[string]int{}}
	ln, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(a.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *pushApp) serve(w http.ResponseWriter, r *http.Request) {
	if a.files != nil && r.URL.Path != "/ws" {
		if b, ok := a.files[r.URL.Path]; ok {
			ct := "text/html; charset=utf-8"
			if strings.HasSuffix(r.URL.Path, ".js") {
				ct = "text/javascript; charset=utf-8"
			}
			w.Header().Set("Content-Type", ct)
			w.Write(b)
			return
		}
		http.NotFound(w, r)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{"chat"}})
	if err != nil {
		return
	}
	sid := r.Header.Get("Zd-Session-Id")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wmu sync.Mutex
	send := func(what string) error {
		wmu.Lock()
		defer wmu.Unlock()
		a.mu.Lock()
		k := a.sent[sid]
		a.sent[sid]++
		a.mu.Unlock()
		return c.Write(ctx, websocket.MessageText, []byte("s"+strconv.Itoa(k)+" "+what))
	}
	go func() {
		tk := time.NewTicker(a.every)
		defer tk.Stop()
		for i := 0; i < a.pushes; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			if send("push") != nil {
				return
			}
		}
	}()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			a.mu.Lock()
			a.ended[sid] = int(websocket.CloseStatus(err))
			a.mu.Unlock()
			return
		}
		a.mu.Lock()
		a.got[sid] = append(a.got[sid], string(data))
		a.mu.Unlock()
		if send("echo "+string(data)) != nil {
			return
		}
	}
}

// session is the Zd-Session-Id whose messages came from driver session id
// ("" while it sent none).
func (a *pushApp) session(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for sid, got := range a.got {
		if len(got) > 0 && strings.HasPrefix(got[0], id+" ") {
			return sid
		}
	}
	return ""
}

func (a *pushApp) sentTo(sid string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent[sid]
}

func (a *pushApp) gotFrom(sid string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got[sid]...)
}

// cutter is a TCP forwarder between the clients and zd-queue that can kill
// every connection through it with a reset (a network that drops: neither
// side gets a Close) and, while holding, resets new ones at once.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[*net.TCPConn]*net.TCPConn
	hold   bool
	cuts   int
}

func startCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: map[*net.TCPConn]*net.TCPConn{}}
	go c.serve()
	t.Cleanup(func() {
		ln.Close()
		c.cut()
	})
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }

func (c *cutter) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.forward(in.(*net.TCPConn))
	}
}

func (c *cutter) forward(in *net.TCPConn) {
	c.mu.Lock()
	hold := c.hold
	c.mu.Unlock()
	if hold {
		in.SetLinger(0)
		in.Close()
		return
	}
	o, err := net.DialTimeout("tcp", c.target, 10*time.Second)
	if err != nil {
		in.Close()
		return
	}
	out := o.(*net.TCPConn)
	c.mu.Lock()
	c.conns[in] = out
	c.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src *net.TCPConn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	c.mu.Lock()
	delete(c.conns, in)
	c.mu.Unlock()
	in.Close()
	out.Close()
}

// cut resets every connection through c, both ways.
func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for in, out := range c.conns {
		in.SetLinger(0)
		out.SetLinger(0)
		in.Close()
		out.Close()
		delete(c.conns, in)
		n++
	}
	c.cuts += n
	return n
}

func (c *cutter) setHold(h bool) {
	c.mu.Lock()
	c.hold = h
	c.mu.Unlock()
}

// queueProc is a zd-queue process in front of static backends.
type queueProc struct {
	addr  string // its TCP listener
	admin string // its admin socket
}

func startQueueProc(t *testing.T, dir, name string, args ...string) *queueProc {
	t.Helper()
	q := &queueProc{admin: filepath.Join(dir, name+"-admin.sock")}
	cmd := exec.Command("zd-queue", append([]string{"--state-dir", filepath.Join(dir, name), "--listen", "127.0.0.1:0",
		"--admin", "unix://" + q.admin, "--log-format", "json"}, args...)...)
	var log syncBuf
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, log.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			log.Write(append(sc.Bytes(), '\n'))
			var l struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "serving" {
				addr <- l.Listen
			}
		}
	}()
	select {
	case q.addr = <-addr:
	case <-done:
		t.Fatalf("%s exited at start:\n%s", name, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not serving within 30s:\n%s", name, log.String())
	}
	return q
}

// metric is the value of one sample line of q's /metrics (the name with
// its labels as printed), 0 when absent.
func (q *queueProc) metric(t *testing.T, sample string) float64 {
	t.Helper()
	out, err := adminGet(q.admin, "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// resumeDriver is testdata/node/wsresume.js: resumable sessions through
// examples/websocket-resume/zd-resume.js on npm ws and Node's WebSocket.
type resumeDriver struct {
	t      *testing.T
	in     io.Writer
	global bool // Node's own WebSocket is there
	mu     sync.Mutex
	events []driverEvent
	more   chan struct{}
	exited chan struct{}
}

type driverEvent struct {
	ID, Ev, State, Reason, Detail, Direction string
	Received, Sent, Have, Replay, Resent     int
	Code, Window, Attempt, Echoes            int
	Mismatched, SecretLength, Queued, Lost   int
	Bad                                      []string
	Message                                  string
	line                                     string
}

func startResumeDriver(t *testing.T) *resumeDriver {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install nodejs and run npm ci in pkg/wsrelay/testdata/node (as .ci/run does)")
	}
	mods, _ := filepath.Abs("../pkg/wsrelay/testdata/node/node_modules")
	if _, err := os.Stat(filepath.Join(mods, "ws")); err != nil {
		t.Skip("npm package ws missing: run npm ci in pkg/wsrelay/testdata/node (as .ci/run does)")
	}
	script, _ := filepath.Abs("testdata/node/wsresume.js")
	var args []string
	// Node 20 has its WebSocket (undici's) behind a flag; 22 has it on.
	if v, err := exec.Command(node, "-p", "process.versions.node.split('.')[0]").Output(); err == nil {
		if m, _ := strconv.Atoi(strings.TrimSpace(string(v))); m > 0 && m < 22 {
			args = append(args, "--experimental-websocket", "--no-warnings")
		}
	}
	d := &resumeDriver{t: t, more: make(chan struct{}, 1), exited: make(chan struct{})}
	if v, err := exec.Command(node, append(args, "-p", "typeof WebSocket")...).Output(); err == nil {
		d.global = strings.TrimSpace(string(v)) == "function"
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, append(args, script)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	var stderr syncBuf
	cmd.Stderr = &stderr
	d.in, _ = cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e driverEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = driverEvent{Ev: "bad-line", Message: err.Error()}
			}
			e.line = sc.Text()
			d.mu.Lock()
			d.events = append(d.events, e)
			d.mu.Unlock()
			select {
			case d.more <- struct{}{}:
			default:
			}
		}
		cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-d.exited
		if t.Failed() {
			t.Logf("node driver events:\n%s\nstderr:\n%s", d.log(), stderr.String())
		}
	})
	return d
}

func (d *resumeDriver) send(cmd map[string]any) {
	b, _ := json.Marshal(cmd)
	if _, err := d.in.Write(append(b, '\n')); err != nil {
		d.t.Fatalf("node driver: %v", err)
	}
}

func (d *resumeDriver) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, e := range d.events {
		if e.Ev != "progress" {
			b.WriteString(e.line + "\n")
		}
	}
	return b.String()
}

// all returns the events of session id named ev.
func (d *resumeDriver) all(id, ev string) []driverEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []driverEvent
	for _, e := range d.events {
		if e.ID == id && e.Ev == ev {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the nth (from 1) event ev of session id, failing the test
// when it does not come within bound; a driver error fails it at once.
func (d *resumeDriver) wait(id, ev string, nth int, bound time.Duration) driverEvent {
	d.t.Helper()
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		if l := d.all(id, ev); len(l) >= nth {
			return l[nth-1]
		}
		if l := d.all(id, "driver-error"); len(l) > 0 {
			d.t.Fatalf("node driver: %s", l[0].Message)
		}
		select {
		case <-d.more:
		case <-d.exited:
			d.t.Fatalf("node driver exited waiting for %s %s #%d", id, ev, nth)
		case <-deadline.C:
			d.t.Fatalf("node driver: no %s %s #%d within %v", id, ev, nth, bound)
		}
	}
}

func wsURL(addr string) string { return fmt.Sprintf("ws://%s/ws", addr) }
