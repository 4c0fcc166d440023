// Package queueapi holds the wire types of zd-queue's control socket
// queue.sock: the operations zdctl and zd-run send and the results zd-queue
// answers with. zd-queue (pkg/proxy), zdctl and zd-run's supervisor import
// it, so a field or op renamed here is renamed on every side, and one that
// drifts is a compile error rather than an empty column. The same Status is
// the JSON of zd-queue's admin GET /_zero-downtime/status; field names follow
// the origin's stats names (snake_case).
package queueapi

// Operations on queue.sock.
const (
	OpStatus   = "status"    // args none; result Status
	OpPause    = "pause"     // args BackendArgs; result Status: hold all new requests, or route nothing to one backend
	OpResume   = "resume"    // args BackendArgs; result Status: replay held requests; for a backend also ends a drain
	OpFlush    = "flush"     // args none; result FlushResult: answer every held request with 503 + Retry-After
	OpDrain    = "drain"     // args DrainArgs; result DrainResult: route nothing new to a backend, wait until it has nothing in flight
	OpWatch    = "watch"     // args WatchArgs; events Status until the client hangs up (or Count events)
	OpSelfTest = "self-test" // args none; result SelfTestResult: hold a synthetic request and replay it
	OpSnapshot = "snapshot"  // args SnapshotArgs; events SnapshotBatch; result SnapshotResult: the live state as snapshot records (snapshot.go)
)

// Health values of zd-queue.
const (
	HealthHealthy   = "healthy"   // a ready backend, nothing draining or held
	HealthReloading = "reloading" // a backend drains, requests are held, or the worker table says reloading
	HealthDegraded  = "degraded"  // no ready backend and not paused by an operator
)

// Backend states, as in BackendStatus.State.
const (
	BackendReady    = "ready"
	BackendPaused   = "paused"   // an operator paused it
	BackendDraining = "draining" // drain asked for, or zd-run's table marks it draining
	BackendDown     = "down"     // connects failed recently; retried after a back-off
	BackendRemoved  = "removed"  // gone from the table, still has requests in flight
)

// BackendArgs are the args of pause and resume; an empty Backend means all
// traffic.
type BackendArgs struct {
	Backend string `msgpack:"backend,omitempty" json:"backend,omitempty"`
}

// DrainArgs are the args of drain.
type DrainArgs struct {
	Backend   string `msgpack:"backend" json:"backend"`
	TimeoutMS int64  `msgpack:"timeout_ms,omitempty" json:"timeout_ms,omitempty"` // default 30000
}

// WatchArgs are the args of watch.
type WatchArgs struct {
	IntervalMS int64 `msgpack:"interval_ms,omitempty" json:"interval_ms,omitempty"` // default 1000, at least 50
	Count      int   `msgpack:"count,omitempty" json:"count,omitempty"`             // 0: until the client hangs up
}

// FlushResult is the result of flush.
type FlushResult struct {
	Flushed int `msgpack:"flushed" json:"flushed"`
}

// DrainResult is the result of drain. A drain that times out is answered
// with a control error of code timeout instead.
type DrainResult struct {
	Backend  string `msgpack:"backend" json:"backend"`
	Drained  bool   `msgpack:"drained" json:"drained"`     // nothing in flight any more
	InFlight int64  `msgpack:"in_flight" json:"in_flight"` // requests still in flight at the end
	Sessions int    `msgpack:"sessions" json:"sessions"`   // WebSocket sessions still attached at the end
	WaitedMS int64  `msgpack:"waited_ms" json:"waited_ms"`
}

// SelfTestResult is the result of self-test: what it did and saw.
type SelfTestResult struct {
	OK         bool     `msgpack:"ok" json:"ok"`
	Steps      []string `msgpack:"steps" json:"steps"`
	Backend    string   `msgpack:"backend,omitempty" json:"backend,omitempty"`
	Status     int      `msgpack:"status,omitempty" json:"status,omitempty"`
	HeldMS     float64  `msgpack:"held_ms" json:"held_ms"`
	ReplayedMS float64  `msgpack:"replay_ms" json:"replay_ms"`
	Error      string   `msgpack:"error,omitempty" json:"error,omitempty"`
}
