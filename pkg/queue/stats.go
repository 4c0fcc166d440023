package queue

import (
	"sort"
	"strconv"
)

// counters are the monotonic totals behind Stats; guarded by Buffer.mu.
type counters struct {
	pushed        uint64
	released      uint64
	replayed      uint64
	abandoned     uint64
	rejected      [ReasonCancelled + 1]uint64
	compressed    uint64
	compressSaved int64
	peakHeld      int
	peakBytes     int64
}

// Stats is a snapshot of a Buffer for the admin status JSON and Prometheus.
// Counters (the *Total fields and Rejected) only grow.
type Stats struct {
	Paused         bool     `json:"paused" msgpack:"paused"`
	PausedBackends []string `json:"paused_backends" msgpack:"paused_backends"`

	// Held is the number of tickets held now; HeldByPriority splits it by
	// priority (only priorities held; keys are the priority in decimal, so
	// JSON and msgpack clients with string-keyed maps read it), HeldByBackend
	// counts the pinned ones by backend.
	Held           int            `json:"held" msgpack:"held"`
	HeldByPriority map[string]int `json:"held_by_priority" msgpack:"held_by_priority"`
	HeldByBackend  map[string]int `json:"held_by_backend" msgpack:"held_by_backend"`
	// Bytes is what MaxBytes limits: bodies as stored plus the per-entry
	// overhead. RawBytes is the held bodies' uncompressed size, StoredBytes
	// their size as kept in memory (compressed ones compressed).
	Bytes       int64 `json:"bytes" msgpack:"bytes"`
	RawBytes    int64 `json:"raw_bytes" msgpack:"raw_bytes"`
	StoredBytes int64 `json:"stored_bytes" msgpack:"stored_bytes"`
	// InFlight is the tickets released but not yet Done; ReplayConcurrency
	// bounds it.
	InFlight          int `json:"in_flight" msgpack:"in_flight"`
	ReplayConcurrency int `json:"replay_concurrency" msgpack:"replay_concurrency"`

	// PushedTotal counts tickets accepted by Push (held or passed through).
	PushedTotal uint64 `json:"pushed_total" msgpack:"pushed_total"`
	// ReleasedTotal counts tickets released for dispatch; ReplayedTotal
	// the subset that had been held (the rest passed straight through).
	ReleasedTotal uint64 `json:"released_total" msgpack:"released_total"`
	ReplayedTotal uint64 `json:"replayed_total" msgpack:"replayed_total"`
	// Rejected counts rejected tickets by reason label (Reason.String):
	// overflow, evicted, expired, flushed, shutdown, too_large, cancelled.
	// Every label is present, zero or not.
	Rejected map[string]uint64 `json:"rejected" msgpack:"rejected"`
	// AbandonedTotal counts released tickets whose client left before
	// Wait returned (the slot was given back without dispatch).
	AbandonedTotal uint64 `json:"abandoned_total" msgpack:"abandoned_total"`
	// CompressedTotal counts bodies compressed; CompressSavedBytesTotal the
	// bytes that saved.
	CompressedTotal         uint64 `json:"compressed_total" msgpack:"compressed_total"`
	CompressSavedBytesTotal int64  `json:"compress_saved_bytes_total" msgpack:"compress_saved_bytes_total"`
	// PeakHeld and PeakBytes are the high-water marks of Held and Bytes.
	PeakHeld  int   `json:"peak_held" msgpack:"peak_held"`
	PeakBytes int64 `json:"peak_bytes" msgpack:"peak_bytes"`
}

// Stats returns a snapshot of the buffer's state and counters. It costs
// O(priorities + pinned backends), not O(tickets).
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{
		Paused:                  b.paused,
		PausedBackends:          make([]string, 0, len(b.pausedBackends)),
		Held:                    b.held,
		HeldByPriority:          make(map[string]int),
		HeldByBackend:           make(map[string]int, len(b.pinned)),
		Bytes:                   b.bytes,
		RawBytes:                b.rawBytes,
		StoredBytes:             b.storedBytes,
		InFlight:                b.inflight,
		ReplayConcurrency:       b.concurrency,
		PushedTotal:             b.c.pushed,
		ReleasedTotal:           b.c.released,
		ReplayedTotal:           b.c.replayed,
		Rejected:                make(map[string]uint64, len(b.c.rejected)-1),
		AbandonedTotal:          b.c.abandoned,
		CompressedTotal:         b.c.compressed,
		CompressSavedBytesTotal: b.c.compressSaved,
		PeakHeld:                b.c.peakHeld,
		PeakBytes:               b.c.peakBytes,
	}
	for id := range b.pausedBackends {
		s.PausedBackends = append(s.PausedBackends, id)
	}
	sort.Strings(s.PausedBackends)
	for m := b.prioMask; m != 0; m &= m - 1 {
		i := bitIndex(m)
		s.HeldByPriority[strconv.Itoa(i+MinPriority)] = b.prioCount[i]
	}
	for id, q := range b.pinned {
		s.HeldByBackend[id] = q.n
	}
	for r := ReasonOverflow; r <= ReasonCancelled; r++ {
		s.Rejected[r.String()] = b.c.rejected[r]
	}
	return s
}
