package snapshot

import (
	"strings"
	"time"
)

// Kind is what a record describes.
type Kind string

// The record kinds of schema 1.
const (
	KindWSSession   Kind = "ws-session"   // a WebSocket session (HTTP/1.1, h2 or h3)
	KindHTTPRequest Kind = "http-request" // an HTTP request in flight or held
	KindTCPConn     Kind = "tcp-conn"     // any other client connection
	KindListener    Kind = "listener"     // a listening socket
	KindWorker      Kind = "worker"       // a worker process
	KindAppSession  Kind = "app-session"  // an app's own session (a login, a cart), whatever its connections
)

// Kinds lists every kind, in the order inspect shows them.
var Kinds = []Kind{KindWSSession, KindHTTPRequest, KindTCPConn, KindAppSession, KindListener, KindWorker}

// State is where a connection or worker is in its life.
type State string

// Connection states (ws-session, http-request, tcp-conn), the origin's
// active/idle/closing plus held for a request zd-queue holds for a backend.
const (
	StateActive  State = "active"
	StateIdle    State = "idle"
	StateClosing State = "closing"
	StateHeld    State = "held"
)

// Worker states.
const (
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateDraining State = "draining"
	StateStopping State = "stopping"
)

// StateListening is the one state of a listener.
const StateListening State = "listening"

// HeaderField is one header line of a handshake or request, in the order received.
type HeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Record is one entry of a snapshot. Kind and ID are required; every other
// field is optional and only the ones that fit the kind are allowed (see
// Validate). The JSON names are the JSON-lines schema of zd-snapshot pack and
// unpack (docs/snapshot-format.md); []byte fields are base64 in JSON.
type Record struct {
	Kind       Kind      `json:"kind"`
	ID         string    `json:"id"`                   // unique within a snapshot
	Protocol   string    `json:"protocol,omitempty"`   // http/1.1, h2, h3, ws, ws-h2, ws-h3, tcp, quic, ...
	State      State     `json:"state,omitempty"`      // see the State constants
	Worker     int       `json:"worker,omitempty"`     // pid of the worker serving it (a worker: its own pid)
	Generation uint64    `json:"generation,omitempty"` // generation of that worker
	Remote     string    `json:"remote,omitempty"`     // peer address
	Local      string    `json:"local,omitempty"`      // local address (a listener: the address it listens on)
	Backend    string    `json:"backend,omitempty"`    // backend it is relayed to
	Created    time.Time `json:"created,omitzero"`     // when it was opened or started
	LastActive time.Time `json:"last_active,omitzero"` // when it last moved a byte

	// The WebSocket handshake, or an HTTP request's head.
	Method      string        `json:"method,omitempty"`
	Target      string        `json:"target,omitempty"` // request target (path and query)
	Headers     []HeaderField `json:"headers,omitempty"`
	Subprotocol string        `json:"subprotocol,omitempty"`
	Extensions  []string      `json:"extensions,omitempty"`
	StreamID    uint64        `json:"stream_id,omitempty"`     // HTTP/2 or HTTP/3 stream
	QUICConnIDs []string      `json:"quic_conn_ids,omitempty"` // QUIC connection ids, hex

	// Traffic so far, and what is buffered.
	MsgsIn     uint64 `json:"msgs_in,omitempty"` // messages from the client
	MsgsOut    uint64 `json:"msgs_out,omitempty"`
	BytesIn    uint64 `json:"bytes_in,omitempty"`
	BytesOut   uint64 `json:"bytes_out,omitempty"`
	PendingIn  []byte `json:"pending_in,omitempty"`  // received from the client, not yet delivered
	PendingOut []byte `json:"pending_out,omitempty"` // for the client, not yet sent
	Body       []byte `json:"body,omitempty"`        // a held request's body
	Priority   int    `json:"priority,omitempty"`    // a held request's priority

	// Listeners and workers.
	Network string `json:"network,omitempty"` // tcp, tcp6, udp, unix, ...
	FD      int    `json:"fd,omitempty"`
	Name    string `json:"name,omitempty"`
	Slot    int    `json:"slot,omitempty"`
	Release string `json:"release,omitempty"`
	Status  string `json:"status,omitempty"` // free text, as a worker's STATUS=

	// Attrs are the app's own attributes, free keys and values.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Limits of schema 1. A record beyond them is refused with ErrSchema, so a
// reader's memory stays bounded by the file, whatever a writer sends.
const (
	MaxString  = 64 << 10 // any string field, header name or value, attribute
	MaxBytes   = 16 << 20 // pending_in, pending_out, body, each
	MaxList    = 4096     // headers, extensions, quic_conn_ids, attrs, each
	maxFieldID = 33
)

func (k Kind) valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// conn reports whether k is a client connection kind, or an app session
// (which takes the same fields).
func (k Kind) conn() bool {
	return k == KindWSSession || k == KindHTTPRequest || k == KindTCPConn || k == KindAppSession
}

func (k Kind) stateOK(s State) bool {
	if s == "" {
		return true
	}
	switch k {
	case KindWSSession, KindTCPConn, KindAppSession:
		return s == StateActive || s == StateIdle || s == StateClosing
	case KindHTTPRequest:
		return s == StateActive || s == StateIdle || s == StateClosing || s == StateHeld
	case KindWorker:
		return s == StateStarting || s == StateReady || s == StateDraining || s == StateStopping
	case KindListener:
		return s == StateListening
	}
	return false
}

// Validate reports whether r fits schema 1: a known kind, a non-empty ID,
// a state the kind allows, no field the kind does not have, and every field
// within the limits. It returns nil or an error wrapping ErrSchema that names
// the field.
func (r *Record) Validate() error {
	if err := r.validateButAttrs(); err != nil {
		return err
	}
	for k, v := range r.Attrs {
		if !attrOK(k, v) {
			return errBadAttr
		}
	}
	return nil
}

// attrOK reports whether an attribute fits schema 1.
func attrOK(k, v string) bool { return k != "" && len(k) <= MaxString && len(v) <= MaxString }

var errBadAttr = schemaError("attrs", "an attribute with an empty or over-long key or value")

// validateButAttrs is Validate without the attributes' keys and values: a
// Writer checks those while it encodes them, as ranging over a map costs
// more than the rest of Validate (two small maps a record: ~20% of a sealed
// write's CPU).
func (r *Record) validateButAttrs() error {
	if !r.Kind.valid() {
		if r.Kind == "" {
			return schemaError("kind", "missing (want one of ws-session, http-request, tcp-conn, app-session, listener, worker)")
		}
		return schemaError("kind", "%q is not a record kind (want one of ws-session, http-request, tcp-conn, app-session, listener, worker)", clip(string(r.Kind)))
	}
	if r.ID == "" {
		return schemaError("id", "missing")
	}
	if !r.Kind.stateOK(r.State) {
		return schemaError("state", "%q is not a state of a %s", clip(string(r.State)), r.Kind)
	}
	if r.longField() {
		for _, s := range [...]struct {
			name, v string
		}{{"id", r.ID}, {"protocol", r.Protocol}, {"remote", r.Remote}, {"local", r.Local}, {"backend", r.Backend},
			{"method", r.Method}, {"target", r.Target}, {"subprotocol", r.Subprotocol}, {"network", r.Network},
			{"name", r.Name}, {"release", r.Release}, {"status", r.Status}} {
			if len(s.v) > MaxString {
				return schemaError(s.name, "%d bytes, more than %d", len(s.v), MaxString)
			}
		}
		for _, b := range [...]struct {
			name string
			v    []byte
		}{{"pending_in", r.PendingIn}, {"pending_out", r.PendingOut}, {"body", r.Body}} {
			if len(b.v) > MaxBytes {
				return schemaError(b.name, "%d bytes, more than %d", len(b.v), MaxBytes)
			}
		}
	}
	if err := checkList("headers", len(r.Headers)); err != nil {
		return err
	}
	for _, h := range r.Headers {
		if h.Name == "" {
			return schemaError("headers", "a header without a name")
		}
		if len(h.Name) > MaxString || len(h.Value) > MaxString {
			return schemaError("headers", "a header of more than %d bytes", MaxString)
		}
	}
	if err := checkStrings("extensions", r.Extensions); err != nil {
		return err
	}
	if err := checkStrings("quic_conn_ids", r.QUICConnIDs); err != nil {
		return err
	}
	if err := checkList("attrs", len(r.Attrs)); err != nil {
		return err
	}
	return r.fieldsFitKind()
}

// longField reports whether any string or byte field is over its limit:
// the common case, none, costs a few comparisons; the error path names it.
func (r *Record) longField() bool {
	return len(r.ID) > MaxString || len(r.Protocol) > MaxString || len(r.Remote) > MaxString ||
		len(r.Local) > MaxString || len(r.Backend) > MaxString || len(r.Method) > MaxString ||
		len(r.Target) > MaxString || len(r.Subprotocol) > MaxString || len(r.Network) > MaxString ||
		len(r.Name) > MaxString || len(r.Release) > MaxString || len(r.Status) > MaxString ||
		len(r.PendingIn) > MaxBytes || len(r.PendingOut) > MaxBytes || len(r.Body) > MaxBytes
}

// fieldsFitKind refuses fields a kind does not have, so a typo of kind in
// a producer shows up at once instead of as silently ignored data.
func (r *Record) fieldsFitKind() error {
	switch {
	case r.Kind == KindListener || r.Kind == KindWorker:
		if len(r.Headers) > 0 || r.Subprotocol != "" || len(r.Extensions) > 0 || r.StreamID != 0 || len(r.QUICConnIDs) > 0 ||
			r.MsgsIn != 0 || r.MsgsOut != 0 || len(r.PendingIn) > 0 || len(r.PendingOut) > 0 || len(r.Body) > 0 ||
			r.Priority != 0 || r.Method != "" || r.Target != "" {
			return schemaError(string(r.Kind), "connection fields (headers, messages, pending bytes, body, ...) on a %s record", r.Kind)
		}
	case r.Kind.conn():
		if r.FD != 0 || r.Slot != 0 || r.Release != "" {
			return schemaError(string(r.Kind), "fd, slot or release on a %s record (they belong to listener and worker records)", r.Kind)
		}
		if r.Kind != KindWSSession && (r.Subprotocol != "" || len(r.Extensions) > 0 || r.MsgsIn != 0 || r.MsgsOut != 0) {
			return schemaError(string(r.Kind), "subprotocol, extensions or message counters on a %s record (they belong to ws-session)", r.Kind)
		}
		if r.Kind != KindHTTPRequest && (len(r.Body) > 0 || r.Priority != 0) {
			return schemaError(string(r.Kind), "body or priority on a %s record (they belong to http-request)", r.Kind)
		}
	}
	return nil
}

func checkList(name string, n int) error {
	if n > MaxList {
		return schemaError(name, "%d entries, more than %d", n, MaxList)
	}
	return nil
}

func checkStrings(name string, l []string) error {
	if err := checkList(name, len(l)); err != nil {
		return err
	}
	for _, s := range l {
		if len(s) > MaxString {
			return schemaError(name, "an entry of %d bytes, more than %d", len(s), MaxString)
		}
	}
	return nil
}

// clip shortens a bad value for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Credential headers are kept only in encrypted files: a plain file gets
// Redacted in their place.
const Redacted = "[redacted]"

// credential reports whether a header carries a credential.
func credential(name string) bool {
	return strings.EqualFold(name, "Cookie") || strings.EqualFold(name, "Authorization") ||
		strings.EqualFold(name, "Proxy-Authorization")
}
