package wsrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoBackend is what a Config.Dial returns when no backend is ready: the
// relay then waits (bounded by ReattachTimeout) and asks again.
var ErrNoBackend = errors.New("no ready backend")

// ErrTooManySessions is Open's error past Config.MaxSessions.
var ErrTooManySessions = errors.New("too many WebSocket sessions")

// Config sets up a Relay. Zero values take the defaults named.
type Config struct {
	// Dial connects to a ready backend that is not draining and names it
	// (the name Drain takes). ErrNoBackend (or any error) makes the relay
	// wait and try again until ReattachTimeout.
	Dial func(ctx context.Context) (conn net.Conn, backend string, err error)

	MaxMessage        int64         // bytes of one message, after inflating (1 MiB); past it: 1009
	MaxHeldPerSession int64         // client→backend bytes held during a move (1 MiB); past it: 1013
	MaxHeldTotal      int64         // same, all sessions (256 MiB); past it: 1013
	MaxSessions       int           // open sessions (100,000); past it Open refuses (503)
	ReattachTimeout   time.Duration // a session waits this long for a backend (30 s; its wait for a dial slot, MaxDials, not counted); then 1012
	CloseTimeout      time.Duration // wait for a Close reply (5 s)
	HandshakeTimeout  time.Duration // one backend handshake (10 s)
	MaxDials          int           // backend dials of re-attaches at once (64)
	DialJitter        time.Duration // random wait before the re-attach dial of a session whose backend closed or dropped, up to (5 ms)
	NoCompression     bool          // do not offer permessage-deflate to clients
	CompressMin       int           // messages to the client shorter than this go uncompressed (128)

	// PingInterval: a client the relay heard nothing from this long gets
	// a Ping (30 s; negative: no pings); PongTimeout: if nothing comes
	// back within it the session ends, counted "ping-timeout" (15 s).
	// WriteTimeout: a write to the client that makes no progress this
	// long ends the session, counted 1008 "write-timeout" (30 s;
	// negative: no bound). See keepalive.go.
	PingInterval time.Duration
	PongTimeout  time.Duration
	WriteTimeout time.Duration

	// ResumeWindow is how long a resumable session (a client that offered
	// a zd-resume token, see resume.go) waits for its client to come back
	// after its stream dropped; 0 turns resumption off (such clients are
	// refused with "off"). zd-queue sets it from --ws-resume-window (2m).
	ResumeWindow time.Duration
	// MaxReplayPerSession bounds the backend→client bytes a resumable
	// session keeps for a replay (1 MiB); MaxReplayTotal the same over all
	// sessions (256 MiB). While the client is connected the oldest are
	// forgotten past them; while it is away the session ends (a resume
	// then gets "gap").
	MaxReplayPerSession int64
	MaxReplayTotal      int64

	// OnMove, when set, is called after each re-attach with how long the
	// session's client→backend messages were held (for a histogram).
	OnMove func(pause time.Duration)

	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxMessage, 1<<20)
	def(&c.MaxHeldPerSession, 1<<20)
	def(&c.MaxHeldTotal, 256<<20)
	def(&c.MaxReplayPerSession, 1<<20)
	def(&c.MaxReplayTotal, 256<<20)
	if c.ResumeWindow < 0 {
		c.ResumeWindow = 0
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 100_000
	}
	if c.ReattachTimeout <= 0 {
		c.ReattachTimeout = 30 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxDials <= 0 {
		c.MaxDials = 64
	}
	if c.DialJitter < 0 {
		c.DialJitter = 0
	} else if c.DialJitter == 0 {
		c.DialJitter = 5 * time.Millisecond
	}
	orDefault := func(d *time.Duration, v time.Duration) {
		switch {
		case *d < 0:
			*d = 0
		case *d == 0:
			*d = v
		}
	}
	orDefault(&c.PingInterval, 30*time.Second)
	orDefault(&c.WriteTimeout, 30*time.Second)
	if c.PongTimeout <= 0 {
		c.PongTimeout = 15 * time.Second
	}
	if c.CompressMin <= 0 {
		c.CompressMin = 128
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Relay owns the WebSocket sessions of one zd-queue.
type Relay struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dials  chan struct{}
	st     counters
	mv     movers

	mu        sync.Mutex
	byBackend map[string]map[*Session]struct{}
	all       map[*Session]struct{}
	resume    resumeIndex
}

// New returns a Relay; Close ends it.
func New(cfg Config) *Relay {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Relay{
		cfg: cfg, ctx: ctx, cancel: cancel,
		dials:     make(chan struct{}, cfg.MaxDials),
		mv:        movers{q: make(chan func())},
		byBackend: map[string]map[*Session]struct{}{},
		all:       map[*Session]struct{}{},
	}
}

// Stats returns a snapshot of the counters.
func (r *Relay) Stats() Stats { return r.st.snapshot() }

// Sessions returns how many sessions are attached to backend now ("" for
// all open sessions).
func (r *Relay) Sessions(backend string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if backend == "" {
		return len(r.all)
	}
	return len(r.byBackend[backend])
}

// SessionCount is how many sessions of one client transport are attached
// to one backend now; Backend is "" for sessions between backends.
type SessionCount struct {
	Backend, Transport string
	Sessions           int
}

// Breakdown counts the open sessions by backend and client transport,
// sorted by backend then transport.
func (r *Relay) Breakdown() []SessionCount {
	n := map[[2]string]int{}
	r.mu.Lock()
	on := 0
	for b, set := range r.byBackend {
		for s := range set {
			n[[2]string{b, s.transport()}]++
			on++
		}
	}
	if on < len(r.all) {
		for s := range r.all {
			if !r.isAttached(s) {
				n[[2]string{"", s.transport()}]++
			}
		}
	}
	r.mu.Unlock()
	out := make([]SessionCount, 0, len(n))
	for k, v := range n {
		out = append(out, SessionCount{Backend: k[0], Transport: k[1], Sessions: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Backend != out[j].Backend {
			return out[i].Backend < out[j].Backend
		}
		return out[i].Transport < out[j].Transport
	})
	return out
}

// isAttached reports whether s is in a backend's set; r.mu is held.
func (r *Relay) isAttached(s *Session) bool {
	for _, set := range r.byBackend {
		if _, ok := set[s]; ok {
			return true
		}
	}
	return false
}

func (r *Relay) attached(s *Session, old, backend string) {
	r.mu.Lock()
	if m := r.byBackend[old]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(r.byBackend, old)
		}
	}
	if backend != "" {
		m := r.byBackend[backend]
		if m == nil {
			m = map[*Session]struct{}{}
			r.byBackend[backend] = m
		}
		m[s] = struct{}{}
	}
	r.mu.Unlock()
}

// Drain moves every session attached to backend off it (the barrier of
// DESIGN.md) and returns when none is left on it, or with ctx's error,
// saying how many are still there. A session is off once the old backend
// answered its Close (or timed out): it may still be waiting for the next
// backend then, up to ReattachTimeout, so a drain with no other backend
// (zd-run's --exclusive) returns and the next generation can start.
// Sessions that cannot be re-attached end with 1012 or 1013 and count as
// gone.
//
// Sessions move drainWindow(MaxDials) at a time, without DialJitter (the
// window paces them): each one's messages are held only while its own
// move runs, not while thousands of others queue for a dial (10,000 moved
// at once held each for most of the whole drain).
func (r *Relay) Drain(ctx context.Context, backend string) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		r.mu.Lock()
		list := make([]*Session, 0, len(r.byBackend[backend]))
		for s := range r.byBackend[backend] {
			list = append(list, s)
		}
		r.mu.Unlock()
		if len(list) == 0 {
			return nil
		}
		started, err := r.moveAll(ctx, backend, list)
		if err == nil && started == 0 {
			// All of them are moving already (their backend closed
			// them): wait for them to leave it.
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-t.C:
			}
		}
		if err != nil {
			return fmt.Errorf("drain %s: %d WebSocket sessions still attached: %w", backend, r.Sessions(backend), err)
		}
		// Sessions that attached to it while it drained move too.
	}
}

// drainWindow is how many sessions a Drain moves at once: enough to keep
// the cores busy while moves wait on their backends (8 a core, at most two
// for each dial slot); more would only queue, holding each session's
// messages longer (9,980 sessions on 2 cores at load 14-18, window 128
// with the jitter: pause p99 310-500 ms, drain 3.9-4.4 s; window 16
// without: 22-45 ms, 2.7-3.4 s).
func drainWindow(maxDials int) int { return min(2*maxDials, 8*runtime.GOMAXPROCS(0)) }

// drainSlot bounds how long a Drain waits for one move before it starts
// the next anyway, so an old backend that is slow to answer Close does not
// slow the whole drain down to a crawl.
const drainSlot = 100 * time.Millisecond

// moveAll starts the move of each session of list that is still attached
// to backend, drainWindow at a time, and returns how many it started once
// each of those moves ended or had its drainSlot. When ctx ends first, the
// rest are started at once and ctx's error returned.
func (r *Relay) moveAll(ctx context.Context, backend string, list []*Session) (int, error) {
	next := make(chan *Session)
	var started atomic.Int64
	var wg sync.WaitGroup
	for range min(len(list), drainWindow(r.cfg.MaxDials)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(drainSlot)
			defer t.Stop()
			for s := range next {
				done := s.requestMove(backend)
				if done == nil {
					continue
				}
				started.Add(1)
				t.Reset(drainSlot)
				select {
				case <-done:
				case <-t.C:
				case <-ctx.Done():
				}
			}
		}()
	}
	var err error
	for i, s := range list {
		select {
		case next <- s:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		// Out of time: the rest start their moves at once, unpaced, so
		// each has had its barrier before the caller stops the backend.
		for _, s := range list[i:] {
			s.requestMove(backend)
		}
		break
	}
	close(next)
	wg.Wait()
	return int(started.Load()), err
}

// Close ends every session with 1012 (Service Restart: the client may
// reconnect at once) and waits for their goroutines, bounded by ctx.
func (r *Relay) Close(ctx context.Context) error {
	r.cancel()
	r.mu.Lock()
	for s := range r.all {
		go s.shutdown()
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close the WebSocket relay: %d sessions still open: %w", r.Sessions(""), ctx.Err())
	}
}

// ServeHTTP serves an HTTP/1.1 WebSocket upgrade: it checks the
// handshake, attaches a backend, answers 101 and returns, leaving the
// session to run on the hijacked connection (Close waits for it). A backend's refusal goes to the
// client as the backend sent it (status, fields, body).
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	key, status, err := CheckUpgrade(req)
	if err != nil {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, "zd-queue: "+err.Error(), status)
		return
	}
	wreq := &Request{Target: req.URL.RequestURI(), Host: req.Host, Header: req.Header, Transport: "h1", Remote: req.RemoteAddr}
	s, resp, err := r.Open(req.Context(), wreq)
	if err != nil {
		WriteOpenError(w, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.Abort()
		http.Error(w, "zd-queue: this connection cannot switch protocols", http.StatusInternalServerError)
		return
	}
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	bw.WriteString(AcceptKey(key))
	bw.WriteString("\r\n")
	resp.Header.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		conn.Close()
		s.Abort()
		return
	}
	var carried []byte
	if n := brw.Reader.Buffered(); n > 0 {
		carried, _ = brw.Reader.Peek(n)
		carried = append([]byte(nil), carried...)
	}
	// The session runs on a goroutine of its own and the handler returns:
	// net/http's per-connection state (buffers, a stack grown by request
	// parsing) is freed instead of living as long as the session.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s.Run(conn, carried)
	}()
}

// WriteOpenError answers a client whose session Open refused, whatever its
// transport: a backend's refusal as the backend sent it (status, end-to-end
// fields, body), ErrTooManySessions with 503 and Retry-After, any other
// error (no backend within ReattachTimeout) with 502 and Retry-After.
func WriteOpenError(w http.ResponseWriter, err error) {
	var ref *RefusedError
	switch {
	case errors.As(err, &ref):
		for k, vv := range ref.Header {
			if notForwarded[k] {
				continue
			}
			w.Header()[k] = vv
		}
		w.WriteHeader(ref.Status)
		w.Write(ref.Body)
	case errors.Is(err, ErrTooManySessions):
		w.Header().Set("Retry-After", "1")
		http.Error(w, "zd-queue: "+err.Error()+"; try again later", http.StatusServiceUnavailable)
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "zd-queue: no backend took the WebSocket: "+err.Error(), http.StatusBadGateway)
	}
}

// Response is what the client's handshake answer carries besides what its
// transport requires (the 101's Sec-WebSocket-Accept, or an h2/h3 200).
type Response struct {
	Header http.Header // Sec-WebSocket-Protocol, Sec-WebSocket-Extensions, the first backend's end-to-end fields (Set-Cookie, ...)
}
