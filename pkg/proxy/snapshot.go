package proxy

import (
	"context"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/zdtools/zd/pkg/queue"
	"github.com/zdtools/zd/pkg/snapshot"
	"github.com/zdtools/zd/pkg/wsrelay"
)

// Live snapshots: zd-queue's state as pkg/snapshot records, for zdctl
// snapshot (queue.sock op snapshot) and POST /_zero-downtime/test-migration.
// Looking must not slow traffic down, so nothing is built under a lock of
// the live state: each lock (a registry shard, the relay's session set, a
// session, the request buffer) is held only to copy a few fields or
// pointers, and the records are made and streamed after it is let go.

// heldHead is a copy of a held request's head, made once when it is first
// held (holding is the slow path already): the request itself belongs to
// its handler, which changes its fields once it is released.
type heldHead struct {
	id     uint64
	method string
	target string
	host   string
	proto  string // http/1.0, http/1.1, h2, h3
	remote string
	header http.Header
	since  time.Time // when it was first held
}

func (p *Proxy) newHeldHead(r *http.Request, now time.Time) *heldHead {
	target := r.RequestURI
	if target == "" && r.URL != nil {
		target = r.URL.RequestURI()
	}
	proto := "http/1.1"
	switch {
	case r.ProtoMajor == 2:
		proto = "h2"
	case r.ProtoMajor == 3:
		proto = "h3"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		proto = "http/1.0"
	}
	return &heldHead{id: p.heldSeq.Add(1), method: r.Method, target: target, host: r.Host, proto: proto,
		remote: r.RemoteAddr, header: r.Header.Clone(), since: now}
}

// SnapshotOptions say what Snapshot dumps.
type SnapshotOptions struct {
	Filter snapshot.Filter
	// Credentials keeps Cookie, Authorization and Proxy-Authorization
	// values in the records; they are snapshot.Redacted otherwise.
	Credentials bool
}

// SnapshotStats is what a Snapshot call did.
type SnapshotStats struct {
	Records int64                   // emitted
	ByKind  map[snapshot.Kind]int64 // emitted, by kind
	Skipped int64                   // records that do not fit the schema (logged), not emitted
	LockMax time.Duration           // the longest one lock of the live state was held
	Took    time.Duration
}

// wsIdleAfter is how long a WebSocket session goes without a message
// either way before its record says idle rather than active.
const wsIdleAfter = time.Second

// Snapshot calls emit with a record for each open client connection
// (tcp-conn), WebSocket session (ws-session) and held request
// (http-request) that passes opt.Filter, in that order. The live state
// changes while it runs: a connection, session or request that comes or
// goes meanwhile may or may not be in it. emit runs with no lock held and
// may block; the record it gets is reused once it returns. Snapshot stops
// at the first error of emit, or when ctx ends, and returns it.
func (p *Proxy) Snapshot(ctx context.Context, opt SnapshotOptions, emit func(*snapshot.Record) error) (SnapshotStats, error) {
	start := time.Now()
	d := dump{p: p, opt: opt, emit: emit, st: SnapshotStats{ByKind: map[snapshot.Kind]int64{}}}
	d.workers()
	var err error
	for _, step := range []struct {
		kind snapshot.Kind
		run  func(context.Context) error
	}{{snapshot.KindTCPConn, d.conns}, {snapshot.KindWSSession, d.sessions}, {snapshot.KindHTTPRequest, d.held}} {
		if len(opt.Filter.Kinds) > 0 && !slices.Contains(opt.Filter.Kinds, step.kind) {
			continue
		}
		if err = step.run(ctx); err != nil {
			break
		}
	}
	d.st.Took = time.Since(start)
	return d.st, err
}

// dump is one Snapshot call.
type dump struct {
	p    *Proxy
	opt  SnapshotOptions
	emit func(*snapshot.Record) error
	st   SnapshotStats
	rec  snapshot.Record
	// pid and generation of each backend that is a worker
	pids map[string][2]int
	// reused for each record's header fields: emit is done with a record
	// when it returns, so 10,000 sessions need not cost 20,000 allocations
	names  []string
	fields []snapshot.HeaderField
}

// locked records how long a lock was held.
func (d *dump) locked(since time.Time) {
	d.st.LockMax = max(d.st.LockMax, time.Since(since))
}

func (d *dump) workers() {
	d.pids = map[string][2]int{}
	rt := d.p.rt
	t := time.Now()
	rt.mu.Lock()
	for _, m := range []map[string]*backend{rt.byID, rt.gone} {
		for id, b := range m {
			if b.pid != 0 {
				d.pids[id] = [2]int{b.pid, b.generation}
			}
		}
	}
	rt.mu.Unlock()
	d.locked(t)
}

// put emits d.rec if it passes the filter and fits the schema.
func (d *dump) put(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &d.rec
	if w, ok := d.pids[r.Backend]; ok {
		r.Worker, r.Generation = w[0], uint64(max(w[1], 0))
	}
	if !d.opt.Filter.Match(r) {
		return nil
	}
	if err := r.Validate(); err != nil {
		d.st.Skipped++
		d.p.log.Warn("snapshot: record left out", "kind", r.Kind, "id", r.ID, "err", err)
		return nil
	}
	if err := d.emit(r); err != nil {
		return err
	}
	d.st.Records++
	d.st.ByKind[r.Kind]++
	if d.st.Records%dumpYield == 0 {
		runtime.Gosched()
	}
	return nil
}

// dumpYield is how many records a dump makes between two yields of its
// processor (~0.5 ms of work): Go preempts a goroutine only after 10 ms,
// and when zd-queue is CPU-bound, a session's goroutine waiting behind a
// dump for that long is the stall the dump must not cause.
const dumpYield = 128

// conns emits the client connections, one registry shard at a time.
func (d *dump) conns(ctx context.Context) error {
	var buf []ClientConn
	attrs := map[string]string{}
	for i := range d.p.conns.shards {
		sh := &d.p.conns.shards[i]
		buf = buf[:0]
		t := time.Now()
		sh.mu.Lock()
		for e := range sh.m {
			buf = append(buf, e.describe())
		}
		sh.mu.Unlock()
		d.locked(t)
		for j := range buf {
			c := &buf[j]
			clear(attrs)
			attrs["zd.server"] = c.Server
			st := snapshot.State(c.State)
			if c.State == "upgraded" {
				st = snapshot.StateActive
				attrs["zd.state"] = c.State
			}
			if c.ReadAhead > 0 {
				attrs["zd.read_ahead"] = strconv.FormatInt(c.ReadAhead, 10)
			}
			d.rec = snapshot.Record{Kind: snapshot.KindTCPConn, ID: "conn-" + strconv.FormatUint(uint64(c.ID), 10),
				Protocol: c.Protocol, State: st, Remote: c.Remote, LastActive: c.Since, Attrs: attrs}
			if c.Conn != nil {
				if a := c.Conn.LocalAddr(); a != nil {
					d.rec.Local = a.String()
				}
			}
			if err := d.put(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// sessions emits the WebSocket sessions.
func (d *dump) sessions(ctx context.Context) error {
	var err error
	now := time.Now()
	t := now
	first := true
	attrs := map[string]string{}
	n := d.p.ws.EachSession(func(s *wsrelay.SessionInfo) bool {
		if first {
			// What the relay's lock was held for is within this.
			d.locked(t)
			first = false
		}
		clear(attrs)
		attrs["zd.relay_state"] = s.State
		if s.Moves > 0 {
			attrs["zd.moves"] = strconv.Itoa(s.Moves)
		}
		if s.Resumable {
			attrs["zd.resumable"] = "true"
		}
		st := snapshot.StateActive
		switch {
		case s.State == wsrelay.SessionClosing:
			st = snapshot.StateClosing
		case s.State == wsrelay.SessionDetached:
			st = snapshot.StateIdle
		case s.State == wsrelay.SessionAttached && now.Sub(s.LastActive) >= wsIdleAfter:
			st = snapshot.StateIdle
		}
		proto := "ws"
		if s.Transport == "h2" || s.Transport == "h3" {
			proto = "ws-" + s.Transport
		}
		d.rec = snapshot.Record{Kind: snapshot.KindWSSession, ID: s.ID, Protocol: proto, State: st, Remote: s.Remote, Backend: s.Backend,
			Created: s.Opened, LastActive: s.LastActive, Method: http.MethodGet, Target: s.Target,
			Headers: d.headerFields(s.Host, s.Header), Subprotocol: s.Subprotocol, Extensions: s.Extensions,
			MsgsIn: s.MsgsFromClient, MsgsOut: s.MsgsToClient, BytesIn: s.BytesFromClient, BytesOut: s.BytesToClient,
			PendingIn: s.Held, Attrs: attrs}
		err = d.put(ctx)
		return err == nil
	})
	if n == 0 {
		d.locked(t)
	}
	return err
}

// held emits the requests held in the buffer, oldest first.
func (d *dump) held(ctx context.Context) error {
	t := time.Now()
	tickets := d.p.q.AppendHeld(nil)
	d.locked(t)
	for _, tk := range tickets {
		if err := d.ticket(ctx, tk); err != nil {
			return err
		}
	}
	return nil
}

func (d *dump) ticket(ctx context.Context, tk *queue.Ticket) error {
	h, ok := tk.Meta().(*heldHead)
	if !ok {
		return nil
	}
	body, err := tk.Body()
	if err != nil {
		d.st.Skipped++
		d.p.log.Warn("snapshot: held request left out", "err", err)
		return nil
	}
	d.rec = snapshot.Record{Kind: snapshot.KindHTTPRequest, ID: "req-" + strconv.FormatUint(h.id, 10), Protocol: h.proto,
		State: snapshot.StateHeld, Remote: h.remote, Backend: tk.Backend(), Created: h.since, Method: h.method,
		Target: h.target, Headers: d.headerFields(h.host, h.header), Body: body, Priority: tk.Priority()}
	return d.put(ctx)
}

// headerFields lists a request's fields, Host first, then by name (a
// header map keeps no order), each name's values in order. What it
// returns is d's until the next call.
func (d *dump) headerFields(host string, h http.Header) []snapshot.HeaderField {
	names := d.names[:0]
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	d.names = names
	out := d.fields[:0]
	if host != "" {
		out = append(out, snapshot.HeaderField{Name: "Host", Value: host})
	}
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, snapshot.HeaderField{Name: k, Value: v})
		}
	}
	d.fields = out
	return out
}
