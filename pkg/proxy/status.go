package proxy

import (
	"runtime"
	"sort"
	"time"

	"github.com/zdtools/zd/pkg/queue"
)

// Status is the proxy's state as reported by GET /_zero-downtime/status and
// the control op "status". Field names follow the origin's stats API.
type Status struct {
	ReloadInProgress  bool            `json:"reload_in_progress" msgpack:"reload_in_progress"`
	Strategy          string          `json:"strategy" msgpack:"strategy"`
	Listeners         []string        `json:"listeners" msgpack:"listeners"`         // tcp/ADDR, tls/ADDR, udp/ADDR (HTTP/3), unix/PATH
	Health            string          `json:"health" msgpack:"health"`               // healthy, reloading or degraded
	HealthReason      string          `json:"health_reason" msgpack:"health_reason"` // why degraded (or reloading); "" when healthy
	Paused            bool            `json:"paused" msgpack:"paused"`               // an operator paused
	Holding           bool            `json:"holding" msgpack:"holding"`
	ActiveConnections int64           `json:"active_connections" msgpack:"active_connections"`
	RequestsInFlight  int64           `json:"requests_in_flight" msgpack:"requests_in_flight"`
	BufferedRequests  int             `json:"buffered_requests" msgpack:"buffered_requests"`
	BufferedBytes     int64           `json:"buffered_bytes" msgpack:"buffered_bytes"`
	ReplayedRequests  uint64          `json:"replayed_requests" msgpack:"replayed_requests"`
	WorkerStats       WorkerStats     `json:"worker_stats" msgpack:"worker_stats"`
	Buffer            queue.Stats     `json:"buffer" msgpack:"buffer"`
	Table             *TableStatus    `json:"worker_table,omitempty" msgpack:"worker_table,omitempty"`
	UptimeSeconds     float64         `json:"uptime_seconds" msgpack:"uptime_seconds"`
	MemoryUsageMB     float64         `json:"memory_usage_mb" msgpack:"memory_usage_mb"`
	Backends          []BackendStatus `json:"backends" msgpack:"backends"`
}

// WorkerStats counts backends by state.
type WorkerStats struct {
	Total    int `json:"total" msgpack:"total"`
	Ready    int `json:"ready" msgpack:"ready"`
	Draining int `json:"draining" msgpack:"draining"`
	Paused   int `json:"paused" msgpack:"paused"`
	Down     int `json:"down" msgpack:"down"`
}

// TableStatus is what was last read from workers.msgpack.
type TableStatus struct {
	Path       string    `json:"path" msgpack:"path"`
	Generation int       `json:"generation" msgpack:"generation"`
	Health     string    `json:"health" msgpack:"health"`
	Loaded     time.Time `json:"loaded" msgpack:"loaded"`
}

// BackendStatus is one backend's state.
type BackendStatus struct {
	Addr       string `json:"addr" msgpack:"addr"`
	State      string `json:"state" msgpack:"state"` // ready, paused, draining, down, removed
	InFlight   int64  `json:"in_flight" msgpack:"in_flight"`
	Served     uint64 `json:"served" msgpack:"served"`
	Failures   uint64 `json:"connect_failures" msgpack:"connect_failures"`
	Slot       int    `json:"slot,omitempty" msgpack:"slot,omitempty"`
	Generation int    `json:"generation,omitempty" msgpack:"generation,omitempty"`
	PID        int    `json:"pid,omitempty" msgpack:"pid,omitempty"`
	Held       int    `json:"held" msgpack:"held"` // pinned requests held for it now
}

// Status returns the proxy's state now.
func (p *Proxy) Status() Status {
	qs := p.q.Stats()
	st := Status{
		Strategy:          p.cfg.Strategy,
		Listeners:         p.listeners(),
		Paused:            p.opPaused.Load(),
		Holding:           qs.Paused,
		ActiveConnections: p.activeConns.Load(),
		RequestsInFlight:  p.inflight.Load(),
		BufferedRequests:  qs.Held,
		BufferedBytes:     qs.Bytes,
		ReplayedRequests:  qs.ReplayedTotal,
		Buffer:            qs,
		UptimeSeconds:     time.Since(p.started).Seconds(),
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.MemoryUsageMB = float64(ms.Sys) / (1 << 20)

	p.rt.mu.Lock()
	for _, b := range p.rt.byID {
		st.Backends = append(st.Backends, backendStatus(b, qs.HeldByBackend[b.id]))
	}
	for _, b := range p.rt.gone {
		st.Backends = append(st.Backends, backendStatus(b, qs.HeldByBackend[b.id]))
	}
	p.rt.mu.Unlock()
	sort.Slice(st.Backends, func(i, j int) bool { return st.Backends[i].Addr < st.Backends[j].Addr })
	for _, b := range st.Backends {
		st.WorkerStats.Total++
		switch b.State {
		case "ready":
			st.WorkerStats.Ready++
		case "draining", "removed":
			st.WorkerStats.Draining++
		case "paused":
			st.WorkerStats.Paused++
		case "down":
			st.WorkerStats.Down++
		}
	}
	p.mu.Lock()
	if !p.lastTable.Loaded.IsZero() {
		t := TableStatus(p.lastTable)
		st.Table = &t
	}
	tablePath := p.tablePath
	p.mu.Unlock()

	st.ReloadInProgress = st.WorkerStats.Draining > 0 || st.Holding ||
		(st.Table != nil && st.Table.Health == "reloading")
	switch {
	case st.WorkerStats.Ready == 0 && !st.Paused:
		st.Health = "degraded"
		st.HealthReason = degradedReason(st, tablePath)
	case st.ReloadInProgress:
		st.Health = "reloading"
		switch {
		case st.Holding:
			st.HealthReason = "holding requests"
		case st.WorkerStats.Draining > 0:
			st.HealthReason = "a backend is draining"
		default:
			st.HealthReason = "the worker table says zd-run is reloading"
		}
	default:
		st.Health = "healthy"
	}
	return st
}

// degradedReason says why no backend is ready.
func degradedReason(st Status, tablePath string) string {
	switch {
	case tablePath != "" && st.Table == nil:
		if why := tableMissing(tablePath); why != "" {
			return "no backend is ready: no worker table: " + why
		}
		return "no backend is ready: the worker table " + tablePath + " has not been read (see the log)"
	case st.WorkerStats.Total == 0 && tablePath == "":
		return "no backend is ready: none configured"
	case st.WorkerStats.Total == 0:
		return "no backend is ready: the worker table lists no ready worker"
	}
	return "no backend is ready"
}

func backendStatus(b *backend, held int) BackendStatus {
	return BackendStatus{Held: held,
		Addr: b.id, State: b.stateName(), InFlight: b.outstanding.Load(), Served: b.served.Load(),
		Failures: b.failures.Load(), Slot: b.slot, Generation: b.generation, PID: b.pid,
	}
}
