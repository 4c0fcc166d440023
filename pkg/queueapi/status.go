package queueapi

import "time"

// Status is the answer to status, pause, resume and each watch event.
type Status struct {
	ReloadInProgress  bool            `msgpack:"reload_in_progress" json:"reload_in_progress"`
	Strategy          string          `msgpack:"strategy" json:"strategy"`
	Listeners         []string        `msgpack:"listeners" json:"listeners"`         // tcp/ADDR, tls/ADDR, udp/ADDR (HTTP/3), unix/PATH
	Health            string          `msgpack:"health" json:"health"`               // Health*
	HealthReason      string          `msgpack:"health_reason" json:"health_reason"` // why degraded (or reloading); "" when healthy
	Paused            bool            `msgpack:"paused" json:"paused"`               // an operator paused
	Holding           bool            `msgpack:"holding" json:"holding"`             // new requests are held (paused, or no ready backend)
	ActiveConnections int64           `msgpack:"active_connections" json:"active_connections"`
	RequestsInFlight  int64           `msgpack:"requests_in_flight" json:"requests_in_flight"`
	BufferedRequests  int             `msgpack:"buffered_requests" json:"buffered_requests"`
	BufferedBytes     int64           `msgpack:"buffered_bytes" json:"buffered_bytes"`
	ReplayedRequests  uint64          `msgpack:"replayed_requests" json:"replayed_requests"`
	WebSocket         WebSocketStats  `msgpack:"websocket" json:"websocket"`
	WorkerStats       WorkerStats     `msgpack:"worker_stats" json:"worker_stats"`
	Buffer            BufferStats     `msgpack:"buffer" json:"buffer"`
	Table             *TableStatus    `msgpack:"worker_table,omitempty" json:"worker_table,omitempty"`
	UptimeSeconds     float64         `msgpack:"uptime_seconds" json:"uptime_seconds"`
	MemoryUsageMB     float64         `msgpack:"memory_usage_mb" json:"memory_usage_mb"`
	Backends          []BackendStatus `msgpack:"backends" json:"backends"`

	// ClientConns counts the open client connections by protocol (h1,
	// h1+tls, h2c, h2, h3), then state (active, idle, upgraded, closing);
	// only what has connections is in it.
	ClientConns map[string]map[string]int `msgpack:"client_conns" json:"client_conns"`
}

// WorkerStats counts backends by state.
type WorkerStats struct {
	Total    int `msgpack:"total" json:"total"`
	Ready    int `msgpack:"ready" json:"ready"`
	Draining int `msgpack:"draining" json:"draining"` // draining or removed
	Paused   int `msgpack:"paused" json:"paused"`
	Down     int `msgpack:"down" json:"down"`
}

// TableStatus is what zd-queue last read from zd-run's workers.msgpack.
type TableStatus struct {
	Path       string    `msgpack:"path" json:"path"`
	Generation int       `msgpack:"generation" json:"generation"`
	Health     string    `msgpack:"health" json:"health"`
	Loaded     time.Time `msgpack:"loaded" json:"loaded"`
}

// BackendStatus is one backend's state.
type BackendStatus struct {
	Addr       string `msgpack:"addr" json:"addr"`
	State      string `msgpack:"state" json:"state"` // Backend*
	InFlight   int64  `msgpack:"in_flight" json:"in_flight"`
	Served     uint64 `msgpack:"served" json:"served"`
	Failures   uint64 `msgpack:"connect_failures" json:"connect_failures"`
	Slot       int    `msgpack:"slot,omitempty" json:"slot,omitempty"`
	Generation int    `msgpack:"generation,omitempty" json:"generation,omitempty"`
	PID        int    `msgpack:"pid,omitempty" json:"pid,omitempty"`
	Held       int    `msgpack:"held" json:"held"`               // pinned requests held for it now
	WSSessions int    `msgpack:"ws_sessions" json:"ws_sessions"` // WebSocket sessions attached to it now
	// WSProtocols splits WSSessions by the client's protocol (h1, h2, h3);
	// null when it has none.
	WSProtocols map[string]int `msgpack:"ws_protocols" json:"ws_protocols"`
}

// WebSocketStats are the counts of zd-queue's WebSocket relay.
type WebSocketStats struct {
	Sessions   int64  `msgpack:"sessions" json:"sessions"`       // open now
	Moving     int64  `msgpack:"moving" json:"moving"`           // between backends now
	Moved      uint64 `msgpack:"moved" json:"moved"`             // re-attaches done since start
	MoveFailed uint64 `msgpack:"move_failed" json:"move_failed"` // sessions closed because no backend took them
	HeldBytes  int64  `msgpack:"held_bytes" json:"held_bytes"`   // client→backend bytes held during moves now
	Detached   int64  `msgpack:"detached" json:"detached"`       // resumable sessions whose client is away now
	Resumed    uint64 `msgpack:"resumed" json:"resumed"`         // client connections attached to their session again since start
	// Protocols splits Sessions by the client's protocol (h1, h2, h3);
	// null when there are none.
	Protocols map[string]int64 `msgpack:"protocols" json:"protocols"`
}

// BufferStats is the state and counters of zd-queue's request buffer. It
// has the fields of pkg/queue's Stats one for one: zd-queue converts with
// BufferStats(stats), so the two cannot drift apart unnoticed.
type BufferStats struct {
	Paused         bool     `msgpack:"paused" json:"paused"`
	PausedBackends []string `msgpack:"paused_backends" json:"paused_backends"`

	// Held is the requests held now; HeldByPriority splits it by priority
	// (keys in decimal), HeldByBackend counts the pinned ones by backend.
	Held           int            `msgpack:"held" json:"held"`
	HeldByPriority map[string]int `msgpack:"held_by_priority" json:"held_by_priority"`
	HeldByBackend  map[string]int `msgpack:"held_by_backend" json:"held_by_backend"`
	// Bytes is what the buffer's byte limit counts; RawBytes the held
	// bodies' uncompressed size, StoredBytes their size in memory.
	Bytes       int64 `msgpack:"bytes" json:"bytes"`
	RawBytes    int64 `msgpack:"raw_bytes" json:"raw_bytes"`
	StoredBytes int64 `msgpack:"stored_bytes" json:"stored_bytes"`
	// InFlight is the released requests not yet done; ReplayConcurrency
	// bounds it.
	InFlight          int `msgpack:"in_flight" json:"in_flight"`
	ReplayConcurrency int `msgpack:"replay_concurrency" json:"replay_concurrency"`

	PushedTotal   uint64 `msgpack:"pushed_total" json:"pushed_total"`
	ReleasedTotal uint64 `msgpack:"released_total" json:"released_total"`
	ReplayedTotal uint64 `msgpack:"replayed_total" json:"replayed_total"`
	// Rejected counts rejected requests by reason: overflow, evicted,
	// expired, flushed, shutdown, too_large, cancelled (every label present).
	Rejected                map[string]uint64 `msgpack:"rejected" json:"rejected"`
	AbandonedTotal          uint64            `msgpack:"abandoned_total" json:"abandoned_total"`
	CompressedTotal         uint64            `msgpack:"compressed_total" json:"compressed_total"`
	CompressSavedBytesTotal int64             `msgpack:"compress_saved_bytes_total" json:"compress_saved_bytes_total"`
	PeakHeld                int               `msgpack:"peak_held" json:"peak_held"`
	PeakBytes               int64             `msgpack:"peak_bytes" json:"peak_bytes"`
}
