package wsrelay

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Close reasons, as counted in Stats.Closes: why a session ended.
const (
	ReasonClient          = "client"           // the client closed (its code)
	ReasonClientGone      = "client-gone"      // the client's stream dropped without a Close
	ReasonClientProtocol  = "client-protocol"  // the client broke RFC 6455 (1002, 1007)
	ReasonTooBig          = "too-big"          // a message over the size limit (1009)
	ReasonBackend         = "backend"          // the backend closed with a code that is passed on
	ReasonBackendProtocol = "backend-protocol" // the backend broke RFC 6455 (1014 to the client)
	ReasonHeldLimit       = "held-limit"       // held bytes over a bound during a move (1013)
	ReasonReattachTimeout = "reattach-timeout" // no backend took the session in time (1012)
	ReasonReattachRefused = "reattach-refused" // a backend refused the re-attach with a 4xx (1012)
	ReasonShutdown        = "shutdown"         // the relay closed (1012)
	ReasonResumeExpired   = "resume-expired"   // a resumable session's client stayed away past the window (1006)
	ReasonResumeGap       = "resume-gap"       // what it missed went over the replay bounds while away, or its resume was refused with "gap" (1006)
	ReasonPingTimeout     = "ping-timeout"     // the client answered no ping within PongTimeout (1006: dropped, see keepalive.go)
	ReasonWriteTimeout    = "write-timeout"    // the client read nothing for WriteTimeout (1008, see keepalive.go)
)

// CloseCount is how many sessions ended with Code for Reason. Code is the
// code the client got or sent (1006: the stream dropped, no Close).
type CloseCount struct {
	Code   uint16
	Reason string
	Count  uint64
}

// MoveBuckets are the upper bounds of Stats.MoveHistogram, in seconds.
var MoveBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Stats are the relay's counters, for a metrics exporter.
type Stats struct {
	Sessions      int64  // open now
	SessionsTotal uint64 // opened since start
	Refused       uint64 // handshakes refused: over the session bound (503)
	Moving        int64  // sessions between backends now
	Moved         uint64 // re-attaches done
	MoveFailed    uint64 // sessions that could not be re-attached (closed 1012/1013)
	HeldBytes     int64  // client→backend bytes held during moves now

	Detached        int64  // resumable sessions whose client is away now
	Resumed         uint64 // resumes that attached a client stream again
	ReplayHeldBytes int64  // backend→client bytes kept for replays now
	// ResumeRefused counts refused resumes by reason (ResumeUnknown, ...).
	ResumeRefused map[string]uint64

	MessagesToBackend, MessagesToClient uint64
	BytesToBackend, BytesToClient       uint64 // payload bytes (after inflating)
	// LostInFlight counts backend→client messages a backend had begun to
	// send when its connection dropped: never delivered in part, dropped.
	LostInFlight uint64

	Closes []CloseCount

	// MoveHistogram[i] counts moves that took at most MoveBuckets[i]; the
	// last element counts the rest. MoveSum is their total, MoveMax the
	// longest.
	MoveHistogram []uint64
	MoveSum       time.Duration
	MoveMax       time.Duration
}

type counters struct {
	sessions, moving, held                 atomic.Int64
	detached, replay                       atomic.Int64
	resumed                                atomic.Uint64
	sessionsTotal, refused, moved, failed  atomic.Uint64
	msgsToBackend, msgsToClient            atomic.Uint64
	bytesToBackend, bytesToClient, lostMid atomic.Uint64

	mu      sync.Mutex
	closes  map[closeKey]uint64
	refusal map[string]uint64
	hist    []uint64
	moveSum time.Duration
	moveMax time.Duration
}

type closeKey struct {
	code   uint16
	reason string
}

func (c *counters) close(code uint16, reason string) {
	c.mu.Lock()
	if c.closes == nil {
		c.closes = map[closeKey]uint64{}
	}
	c.closes[closeKey{code, reason}]++
	c.mu.Unlock()
}

func (c *counters) resumeRefused(reason string) {
	c.mu.Lock()
	if c.refusal == nil {
		c.refusal = map[string]uint64{}
	}
	c.refusal[reason]++
	c.mu.Unlock()
}

func (c *counters) move(d time.Duration) {
	s := d.Seconds()
	i := sort.SearchFloat64s(MoveBuckets, s)
	c.mu.Lock()
	if c.hist == nil {
		c.hist = make([]uint64, len(MoveBuckets)+1)
	}
	c.hist[i]++
	c.moveSum += d
	c.moveMax = max(c.moveMax, d)
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Sessions: c.sessions.Load(), SessionsTotal: c.sessionsTotal.Load(), Refused: c.refused.Load(),
		Moving: c.moving.Load(), Moved: c.moved.Load(), MoveFailed: c.failed.Load(), HeldBytes: c.held.Load(),
		MessagesToBackend: c.msgsToBackend.Load(), MessagesToClient: c.msgsToClient.Load(),
		BytesToBackend: c.bytesToBackend.Load(), BytesToClient: c.bytesToClient.Load(),
		LostInFlight: c.lostMid.Load(),
		Detached:     c.detached.Load(), Resumed: c.resumed.Load(), ReplayHeldBytes: c.replay.Load(),
		ResumeRefused: map[string]uint64{},
	}
	c.mu.Lock()
	for k, n := range c.refusal {
		s.ResumeRefused[k] = n
	}
	for k, n := range c.closes {
		s.Closes = append(s.Closes, CloseCount{Code: k.code, Reason: k.reason, Count: n})
	}
	s.MoveHistogram = append(make([]uint64, 0, len(MoveBuckets)+1), c.hist...)
	if len(s.MoveHistogram) == 0 {
		s.MoveHistogram = make([]uint64, len(MoveBuckets)+1)
	}
	s.MoveSum, s.MoveMax = c.moveSum, c.moveMax
	c.mu.Unlock()
	sort.Slice(s.Closes, func(i, j int) bool {
		if s.Closes[i].Code != s.Closes[j].Code {
			return s.Closes[i].Code < s.Closes[j].Code
		}
		return s.Closes[i].Reason < s.Closes[j].Reason
	})
	return s
}
