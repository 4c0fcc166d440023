// Package runapi holds the wire types of zd-run's control socket run.sock:
// the operations zdctl sends and the results and events zd-run answers with.
// Both sides import it, so a field renamed here is renamed on both. Field
// names follow the origin's stats and reload-result names (snake_case), which
// are also the names of zdctl's --json output. Every field is always
// present in that output: a Text with nothing to say is null, an absent
// object null, an empty list [].
package runapi

import "encoding/json"

// Text is a string that is JSON null when empty, so that a documented field
// is present in zdctl's --json output even when there is nothing to say. On
// run.sock (msgpack) it is a plain string.
type Text string

// MarshalJSON writes null for "", else the string.
func (t Text) MarshalJSON() ([]byte, error) {
	if t == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(t))
}

// UnmarshalJSON reads null as "".
func (t *Text) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = ""
		return nil
	}
	var s string
	err := json.Unmarshal(b, &s)
	*t = Text(s)
	return err
}

// Operations on run.sock.
const (
	OpStatus   = "status"   // args none; result Status
	OpReload   = "reload"   // args ReloadArgs; events Event; result ReloadResult
	OpRollback = "rollback" // args ReloadArgs; events Event; result ReloadResult
	OpStop     = "stop"     // args StopArgs; result StopResult
	OpWatch    = "watch"    // args none; events Event until the client goes away
)

// Strategies of a reload.
const (
	StrategyRolling   = "rolling"
	StrategyBlueGreen = "blue-green"
	StrategyHandoff   = "handoff"
)

// Health values of the service.
const (
	HealthHealthy   = "healthy"   // every slot has a ready worker
	HealthReloading = "reloading" // a reload or upgrade is in progress
	HealthDegraded  = "degraded"  // a slot has no ready worker (respawn limit hit, starting, crashed)
	HealthStopping  = "stopping"  // a stop is in progress
)

// ReloadArgs are the arguments of reload and rollback. Zero values mean the
// daemon's defaults (--strategy, --ready-timeout based bound).
type ReloadArgs struct {
	Strategy  string `msgpack:"strategy,omitempty" json:"strategy,omitempty"`
	TimeoutMS int64  `msgpack:"timeout_ms,omitempty" json:"timeout_ms,omitempty"`
	Exclusive bool   `msgpack:"exclusive,omitempty" json:"exclusive,omitempty"`
	// Target (rollback) is the release to go back to: a generation number
	// ("42") or an absolute path (a release directory, or the app's
	// executable); "" is the previous release.
	Target string `msgpack:"target,omitempty" json:"target,omitempty"`
	// Force (reload) deploys even the release the last rollback rolled back
	// from, which a plain reload refuses.
	Force bool `msgpack:"force,omitempty" json:"force,omitempty"`
}

// LinkChange says what a rollback did to the symlink the command path
// resolves through (the deploy's `current` link).
type LinkChange struct {
	Path  string `msgpack:"path" json:"path"`   // the link
	Was   string `msgpack:"was" json:"was"`     // its target before
	Now   string `msgpack:"now" json:"now"`     // its target after (Was when it could not be changed)
	Error Text   `msgpack:"error" json:"error"` // why it was not re-pointed; null when it was
}

// ReloadResult is the final result of a reload, rollback or upgrade, with
// the origin's field names.
type ReloadResult struct {
	ReloadSuccessful    bool    `msgpack:"reload_successful" json:"reload_successful"`
	Strategy            string  `msgpack:"strategy" json:"strategy"`
	DurationMS          float64 `msgpack:"duration_ms" json:"duration_ms"`
	MigratedConnections int     `msgpack:"migrated_connections" json:"migrated_connections"`
	ReplayedRequests    int     `msgpack:"replayed_requests" json:"replayed_requests"`
	// Generation is the generation serving after the reload: a new one
	// for rolling and blue-green; for handoff (Upgraded) the one kept.
	Generation int  `msgpack:"generation" json:"generation"`
	Release    Text `msgpack:"release" json:"release"` // the workers' release (resolved path)
	// Upgraded: a handoff replaced zd-run itself and kept the workers.
	Upgraded bool `msgpack:"upgraded" json:"upgraded"`
	// ResolvesTo is what the command path resolves to now, when it is not
	// Release: a handoff did not deploy it; `zdctl reload` does.
	ResolvesTo Text `msgpack:"resolves_to" json:"resolves_to"`
	// RolledBackFrom (rollback) is the release rolled back from; a plain
	// reload refuses to deploy it again (reload --force does).
	RolledBackFrom Text        `msgpack:"rolled_back_from" json:"rolled_back_from"`
	Link           *LinkChange `msgpack:"link" json:"link"` // rollback: the `current` link; null otherwise
	Error          Text        `msgpack:"error" json:"error"`
	Hint           Text        `msgpack:"hint" json:"hint"`
}

// StopArgs are the arguments of stop.
type StopArgs struct {
	Now bool `msgpack:"now,omitempty" json:"now,omitempty"` // skip the drain: KILL at once
}

// StopResult is the answer to stop: the stop has begun.
type StopResult struct {
	Stopping bool `msgpack:"stopping" json:"stopping"`
}

// Worker is one row of the status.
type Worker struct {
	Slot       int     `msgpack:"slot" json:"slot"`
	Generation int     `msgpack:"generation" json:"generation"`
	PID        int     `msgpack:"pid" json:"pid"`
	State      string  `msgpack:"state" json:"state"`
	Backend    Text    `msgpack:"backend" json:"backend"`
	Release    string  `msgpack:"release" json:"release"`
	StartedAt  int64   `msgpack:"started_at_unix_ms" json:"started_at_unix_ms"`
	ReadyAt    int64   `msgpack:"ready_at_unix_ms" json:"ready_at_unix_ms"` // 0 until ready
	UptimeS    float64 `msgpack:"uptime_seconds" json:"uptime_seconds"`
	Restarts   int     `msgpack:"restarts" json:"restarts"`
	RSSBytes   int64   `msgpack:"rss_bytes" json:"rss_bytes"`
	Status     Text    `msgpack:"status" json:"status"` // the worker's last STATUS=
}

// WorkerStats sums the workers by state.
type WorkerStats struct {
	Total    int `msgpack:"total" json:"total"`
	Ready    int `msgpack:"ready" json:"ready"`
	Starting int `msgpack:"starting" json:"starting"`
	Draining int `msgpack:"draining" json:"draining"`
	Desired  int `msgpack:"desired" json:"desired"`
	Restarts int `msgpack:"restarts" json:"restarts"`
}

// Status is the answer to status, with the origin's stats names.
type Status struct {
	Name              string        `msgpack:"name" json:"name"`
	PID               int           `msgpack:"pid" json:"pid"`
	Version           string        `msgpack:"version" json:"version"`
	Health            string        `msgpack:"health" json:"health"`
	HealthReason      Text          `msgpack:"health_reason" json:"health_reason"` // null when healthy
	ReloadInProgress  bool          `msgpack:"reload_in_progress" json:"reload_in_progress"`
	Strategy          string        `msgpack:"strategy" json:"strategy"`
	Generation        int           `msgpack:"generation" json:"generation"`
	Release           string        `msgpack:"release" json:"release"`
	PreviousRelease   Text          `msgpack:"previous_release" json:"previous_release"`     // what rollback returns to
	RolledBackFrom    Text          `msgpack:"rolled_back_from" json:"rolled_back_from"`     // a plain reload refuses it
	ResolvesTo        Text          `msgpack:"resolves_to" json:"resolves_to"`               // the command path now; a reload deploys it
	ActiveConnections int           `msgpack:"active_connections" json:"active_connections"` // accepted on zd-run's own TCP and unix stream listeners
	WorkerStats       WorkerStats   `msgpack:"worker_stats" json:"worker_stats"`
	MemoryUsageMB     float64       `msgpack:"memory_usage_mb" json:"memory_usage_mb"`
	UptimeSeconds     float64       `msgpack:"uptime_seconds" json:"uptime_seconds"`
	Listeners         []string      `msgpack:"listeners" json:"listeners"`
	StateDir          string        `msgpack:"state_dir" json:"state_dir"`
	Upgrades          int           `msgpack:"upgrades" json:"upgrades"`
	LastReload        *ReloadResult `msgpack:"last_reload" json:"last_reload"`
	Workers           []Worker      `msgpack:"workers" json:"workers"`
}

// Event is one step of a reload or a change seen by watch.
type Event struct {
	TimeUnixMS int64  `msgpack:"time_unix_ms" json:"time_unix_ms"`
	Kind       string `msgpack:"kind" json:"kind"` // spawn, ready, drain, stop, exit, abort, done, respawn, degraded, health, upgrade
	Slot       int    `msgpack:"slot" json:"slot"`
	Generation int    `msgpack:"generation" json:"generation"`
	PID        int    `msgpack:"pid,omitempty" json:"pid,omitempty"`
	Message    string `msgpack:"message" json:"message"`
}
