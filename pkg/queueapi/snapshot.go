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
