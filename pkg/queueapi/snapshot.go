package queueapi

// SnapshotArgs are the args of snapshot: zd-queue's live state (client
// connections, WebSocket sessions, held requests) as pkg/snapshot records,
// streamed in SnapshotBatch events and summed up in a SnapshotResult.
type SnapshotArgs struct {
	// Filter selects records in zd-snapshot's --filter syntax
	// (kind=ws-session,state=active,worker=PID,backend=ADDR,protocol=P);
	// "" for all. A bad filter gets a bad-request error.
	Filter string `msgpack:"filter,omitempty" json:"filter,omitempty"`
	// Credentials keeps the values of Cookie, Authorization and
	// Proxy-Authorization (ask only when writing an encrypted file);
	// without it they leave zd-queue as pkg/snapshot's Redacted.
	Credentials bool `msgpack:"credentials,omitempty" json:"credentials,omitempty"`
}

// SnapshotBatch is one event of snapshot. Records holds whole records,
// each in pkg/snapshot's msgpack encoding (Record.UnmarshalMsgpack reads
// one). A record too big for one frame (a held request with a large body)
// comes instead as a run of events with Part set, each a piece of its
// encoding in order, the last with Last set; such an event has no Records.
type SnapshotBatch struct {
	Records [][]byte `msgpack:"records,omitempty" json:"records,omitempty"`
	Part    []byte   `msgpack:"part,omitempty" json:"part,omitempty"`
	Last    bool     `msgpack:"last,omitempty" json:"last,omitempty"`
}

// SnapshotResult is the result of snapshot, after the last event.
type SnapshotResult struct {
	Records int64            `msgpack:"records" json:"records"` // sent in the events
	ByKind  map[string]int64 `msgpack:"by_kind" json:"by_kind"` // of those, by record kind
	// Skipped counts records left out because they do not fit the
	// snapshot schema (a field over its limit; zd-queue logs each).
	Skipped int64 `msgpack:"skipped" json:"skipped"`
	// Generation is the worker table's generation zd-queue last read (0:
	// none), for the file's header.
	Generation int `msgpack:"generation" json:"generation"`
	// TookMS is how long the dump took, streaming included; LockMaxUS the
	// longest any one lock of the live state was held to copy from it (the
	// most any request or session could have waited on the dump).
	TookMS    float64 `msgpack:"took_ms" json:"took_ms"`
	LockMaxUS float64 `msgpack:"lock_max_us" json:"lock_max_us"`
}

// MigrationTest is the answer of zd-queue's POST
// /_zero-downtime/test-migration: the hold-and-replay self-test, and a
// round trip of a snapshot of the live state. OK is both OKs.
type MigrationTest struct {
	SelfTestResult
	OK       bool              `msgpack:"ok" json:"ok"`
	Snapshot SnapshotRoundTrip `msgpack:"snapshot" json:"snapshot"`
}

// SnapshotRoundTrip is what the test-migration round trip did: the live
// state written to an encrypted, compressed snapshot in a temporary file
// (removed after), the file read back whole (every chunk authenticated,
// every record checked) and the records counted by kind on both sides.
type SnapshotRoundTrip struct {
	OK      bool             `msgpack:"ok" json:"ok"` // the file was whole and read back the records written
	Records int64            `msgpack:"records" json:"records"`
	Written map[string]int64 `msgpack:"written" json:"written"` // by kind
	Read    map[string]int64 `msgpack:"read" json:"read"`       // by kind
	Skipped int64            `msgpack:"skipped" json:"skipped"` // left out: over a schema limit
	Bytes   int64            `msgpack:"bytes" json:"bytes"`     // the file's size
	// WriteMS is the dump into the file (copying the live state, encoding,
	// compressing, sealing), CloseMS its sync and rename, ReadMS reading it
	// back, TotalMS all of it; LockMaxUS the longest any lock of the live
	// state was held for it.
	WriteMS   float64 `msgpack:"write_ms" json:"write_ms"`
	CloseMS   float64 `msgpack:"close_ms" json:"close_ms"`
	ReadMS    float64 `msgpack:"read_ms" json:"read_ms"`
	TotalMS   float64 `msgpack:"total_ms" json:"total_ms"`
	LockMaxUS float64 `msgpack:"lock_max_us" json:"lock_max_us"`
	Error     string  `msgpack:"error,omitempty" json:"error,omitempty"`
}
