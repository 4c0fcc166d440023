package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// BackendSpec is one backend the proxy should know, with its state in the
// worker table.
type BackendSpec struct {
	Addr       string // unix:///path or tcp://host:port
	Draining   bool   // known but getting no new requests
	Slot       int
	Generation int
	PID        int
	// Worker marks a worker from the worker table: only those are found
	// by a slot:N pin.
	Worker bool
}

// router holds the backend set. Requests read an immutable snapshot with
// one atomic load; changes build a new snapshot under mu.
type router struct {
	cfg *Config

	mu      sync.Mutex
	byID    map[string]*backend
	gone    map[string]*backend // removed from the table, still finishing requests
	snap    atomic.Pointer[[]*backend]
	rr      atomic.Uint32
	version atomic.Uint64
	changed chan struct{} // closed and replaced on every change
	// retired sums the requests served by backends forgotten since, by
	// metric label, so a slot's counter never goes down across reloads.
	retired map[string]uint64
}

func newRouter(cfg *Config) *router {
	rt := &router{cfg: cfg, byID: map[string]*backend{}, gone: map[string]*backend{}, changed: make(chan struct{}), retired: map[string]uint64{}}
	empty := []*backend{}
	rt.snap.Store(&empty)
	return rt
}

// set replaces the backend set. Backends not in specs stop getting requests
// and are closed once their last request finishes; nothing in flight is
// touched.
func (rt *router) set(specs []BackendSpec) error {
	type parsed struct {
		spec              BackendSpec
		network, addr, id string
	}
	ps := make([]parsed, 0, len(specs))
	for _, s := range specs {
		n, a, id, err := ParseBackend(s.Addr)
		if err != nil {
			return err
		}
		ps = append(ps, parsed{s, n, a, id})
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	keep := map[string]bool{}
	for _, p := range ps {
		keep[p.id] = true
		b := rt.byID[p.id]
		if b == nil {
			if b = rt.gone[p.id]; b != nil {
				delete(rt.gone, p.id)
				b.removed.Store(false)
			} else {
				b = newBackend(p.id, p.network, p.addr, rt.cfg)
			}
			rt.byID[p.id] = b
		}
		b.slot, b.generation, b.pid, b.worker = p.spec.Slot, p.spec.Generation, p.spec.PID, p.spec.Worker
		if p.spec.Draining {
			// Cleared only by an explicit resume: a drain asked for over
			// queue.sock must outlive a table that still says ready.
			b.draining.Store(true)
		}
	}
	for id, b := range rt.byID {
		if !keep[id] {
			b.draining.Store(true)
			b.removed.Store(true)
			delete(rt.byID, id)
			rt.gone[id] = b
		}
	}
	rt.publishLocked()
	return nil
}

// publishLocked rebuilds the routing snapshot and wakes waiters.
func (rt *router) publishLocked() {
	list := make([]*backend, 0, len(rt.byID))
	for _, b := range rt.byID {
		list = append(list, b)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	rt.snap.Store(&list)
	rt.version.Add(1)
	close(rt.changed)
	rt.changed = make(chan struct{})
	rt.reapLocked()
}

// reapLocked closes the pools of removed backends with nothing in flight.
func (rt *router) reapLocked() {
	for id, b := range rt.gone {
		if b.outstanding.Load() == 0 {
			b.pool.closeIdle(true)
			delete(rt.gone, id)
			rt.retired[b.metricLabel()] += b.served.Load()
		}
	}
}

// reap is called now and then to close pools of removed backends.
func (rt *router) reap() {
	rt.mu.Lock()
	rt.reapLocked()
	rt.mu.Unlock()
}

// notify returns a channel closed at the next change of the backend set or
// of a backend's routability.
func (rt *router) notify() <-chan struct{} {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.changed
}

// poke wakes waiters after a routability change (pause, drain, resume).
func (rt *router) poke() {
	rt.mu.Lock()
	rt.publishLocked()
	rt.mu.Unlock()
}

// pick returns the routable backend with the fewest requests in flight,
// skipping those in tried and, when possible, those recently refused. Ties
// rotate. It returns nil when no backend is routable.
func (rt *router) pick(tried []*backend) *backend {
	list := *rt.snap.Load()
	n := len(list)
	if n == 0 {
		return nil
	}
	var now int64 // read only if some backend was marked down: a clock read per request adds up
	start := int(rt.rr.Add(1))
	var best, bestDown *backend
	var bestN, bestDownN int64
	for i := 0; i < n; i++ {
		b := list[(start+i)%n]
		if !b.routable() || contains(tried, b) {
			continue
		}
		o := b.outstanding.Load()
		if du := b.downUntil.Load(); du != 0 && now == 0 {
			now = time.Now().UnixNano()
		}
		if b.isDown(now) {
			if bestDown == nil || o < bestDownN {
				bestDown, bestDownN = b, o
			}
			continue
		}
		if best == nil || o < bestN {
			best, bestN = b, o
		}
	}
	if best == nil {
		return bestDown
	}
	return best
}

// routableCount is the number of backends that may get new requests.
func (rt *router) routableCount() int {
	c := 0
	for _, b := range *rt.snap.Load() {
		if b.routable() {
			c++
		}
	}
	return c
}

// lookup finds a backend by id (any accepted spelling), including removed
// ones still finishing requests.
func (rt *router) lookup(addr string) *backend {
	_, _, id, err := ParseBackend(addr)
	if err != nil {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if b := rt.byID[id]; b != nil {
		return b
	}
	return rt.gone[id]
}

// all returns every known backend, current ones first.
func (rt *router) all() []*backend {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := make([]*backend, 0, len(rt.byID)+len(rt.gone))
	out = append(out, *rt.snap.Load()...)
	for _, b := range rt.gone {
		out = append(out, b)
	}
	return out
}

// close closes every pool.
func (rt *router) close() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, b := range rt.byID {
		b.pool.closeIdle(true)
	}
	for _, b := range rt.gone {
		b.pool.closeIdle(true)
	}
}

func contains(list []*backend, b *backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}
