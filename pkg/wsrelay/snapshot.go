package wsrelay

import (
	"net/http"
	"sync/atomic"
	"time"
)

// A read-only view of the open sessions, for zd-queue's live snapshots
// (zdctl snapshot, test-migration) and, later, a successor zd-queue. It is
// built so that looking does not slow the sessions down: the relay's lock
// is held only to copy the session pointers, each session's lock only to
// copy its few mutable fields, and the counters are atomics the loops bump
// beside the relay-wide ones.

// SessionInfo is a copy of one session's state; only Header is shared
// with the session.
type SessionInfo struct {
	ID        string // its Zd-Session-Id
	Transport string // the client's protocol: h1, h2 or h3
	Target    string // path and query of the handshake
	Host      string
	// Remote is the address of the client that opened the session
	// (Request.Remote), "" when its caller did not say. A resumed
	// session keeps its first client's.
	Remote string
	// Header is the client's handshake as every backend gets it (Cookie
	// and Authorization included: a caller writing it anywhere decides
	// whether to keep them). It is the session's own, which nothing
	// changes once Open returned: read it, never change it (copying it
	// for each of 10,000 sessions was a quarter of a dump's CPU time).
	Header      http.Header
	Subprotocol string   // the one the backend chose, "" for none
	Extensions  []string // negotiated with the client (permessage-deflate's answer), nil for none
	Backend     string   // the backend it is attached to; "" while it moves
	// State is attached (messages flow), moving (between backends:
	// client messages are held), detached (a resumable session whose
	// client is away) or closing.
	State     string
	Moves     int  // re-attaches so far (the Zd-Resume of the last)
	Resumable bool // the client offered a zd-resume token
	Opened    time.Time
	// LastActive is when a data message last went either way (Opened
	// before the first).
	LastActive time.Time

	MsgsFromClient, MsgsToClient   uint64 // data messages relayed
	BytesFromClient, BytesToClient uint64 // their payload bytes (inflated)
	// Held is a copy of the client→backend frames held while the session
	// moves (RFC 6455 frames as the next backend gets them), nil when
	// nothing is held.
	Held []byte
}

// Session states as SessionInfo names them.
const (
	SessionAttached = "attached"
	SessionMoving   = "moving"
	SessionDetached = "detached"
	SessionClosing  = "closing"
)

// sessionSnap is what a session keeps only to be looked at.
type sessionSnap struct {
	opened    time.Time
	extension string // the permessage-deflate answer, "" without
	last      atomic.Int64
	msgsIn    atomic.Uint64
	msgsOut   atomic.Uint64
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64
}

// fromClient counts a data message of n payload bytes relayed from the client.
func (c *sessionSnap) fromClient(n int) {
	c.msgsIn.Add(1)
	c.bytesIn.Add(uint64(n))
	c.last.Store(time.Now().UnixNano())
}

// toClient counts a data message of n payload bytes relayed to the client.
func (c *sessionSnap) toClient(n int) {
	c.msgsOut.Add(1)
	c.bytesOut.Add(uint64(n))
	c.last.Store(time.Now().UnixNano())
}

// EachSession calls fn with a copy of every open session's state, until fn
// returns false, and returns how many it called fn with. Sessions opened
// or ended meanwhile may or may not be seen. fn runs with no lock held, so
// it may block (write to a socket, say) without stalling any session.
func (r *Relay) EachSession(fn func(*SessionInfo) bool) int {
	r.mu.Lock()
	all := make([]*Session, 0, len(r.all))
	for s := range r.all {
		all = append(all, s)
	}
	r.mu.Unlock()
	n := 0
	var info SessionInfo
	for _, s := range all {
		s.describe(&info)
		n++
		if !fn(&info) {
			break
		}
	}
	return n
}

// describe fills info with a copy of s's state.
func (s *Session) describe(info *SessionInfo) {
	*info = SessionInfo{
		ID: s.id, Transport: s.transport(), Target: s.req.Target, Host: s.req.Host, Remote: s.req.Remote,
		Header: s.req.Header, Subprotocol: s.protocol,
		Opened:         s.snap.opened,
		MsgsFromClient: s.snap.msgsIn.Load(), MsgsToClient: s.snap.msgsOut.Load(),
		BytesFromClient: s.snap.bytesIn.Load(), BytesToClient: s.snap.bytesOut.Load(),
		Resumable: s.rs != nil,
	}
	if s.snap.extension != "" {
		info.Extensions = []string{s.snap.extension}
	}
	info.LastActive = s.snap.opened
	if ns := s.snap.last.Load(); ns != 0 {
		info.LastActive = time.Unix(0, ns)
	}
	s.mu.Lock()
	switch st := s.state.Load(); {
	case st == stClosing:
		info.State = SessionClosing
	case s.rs != nil && s.rs.detached:
		info.State = SessionDetached
	case st == stMoving:
		info.State = SessionMoving
	default:
		info.State = SessionAttached
	}
	if s.b != nil && info.State != SessionMoving {
		info.Backend = s.b.name
	}
	info.Moves = s.resume
	if s.held != nil && len(*s.held) > 0 {
		info.Held = append([]byte(nil), *s.held...)
	}
	s.mu.Unlock()
}
