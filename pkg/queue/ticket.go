package queue

import (
	"context"
	"fmt"
	"time"
)

// Reason says why a ticket left the buffer without being released.
type Reason uint8

// The reasons a ticket can be rejected. The proxy answers all of them with
// 503 and Retry-After except ReasonTooLarge (413); ReasonCancelled is never
// seen by a proxy (Wait returns the context's error instead).
const (
	ReasonNone      Reason = iota // not rejected (released)
	ReasonOverflow                // refused by Push: a limit was reached
	ReasonEvicted                 // evicted by overflow strategy Oldest
	ReasonExpired                 // held longer than MaxAge
	ReasonFlushed                 // removed by Flush
	ReasonShutdown                // removed by Close, or pushed after it
	ReasonTooLarge                // body larger than MaxBytes on its own
	ReasonCancelled               // the client went away (Wait's ctx ended)
)

// String returns the reason's label as used in stats and metrics:
// "", "overflow", "evicted", "expired", "flushed", "shutdown", "too_large"
// or "cancelled".
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return ""
	case ReasonOverflow:
		return "overflow"
	case ReasonEvicted:
		return "evicted"
	case ReasonExpired:
		return "expired"
	case ReasonFlushed:
		return "flushed"
	case ReasonShutdown:
		return "shutdown"
	case ReasonTooLarge:
		return "too_large"
	case ReasonCancelled:
		return "cancelled"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Outcome is how a ticket left the buffer: released for dispatch, or
// rejected with a reason.
type Outcome struct {
	// Released means: forward the request now, and call Done when the
	// backend exchange is finished.
	Released bool
	// Reason is why the ticket was rejected; ReasonNone when Released.
	Reason Reason
}

// ticket states; all transitions happen under Buffer.mu.
const (
	stateNew      uint8 = iota // not pushed yet
	stateHeld                  // in the buffer
	stateReleased              // released, holding a replay slot
	stateRejected              // rejected (final)
	stateDone                  // released and Done (final)
)

// Ticket is one request waiting in a Buffer. Create it with NewTicket, hand
// it to Buffer.Push, then block in Wait. A Ticket belongs to one Buffer and
// is pushed at most once. Its methods may be called from any goroutine once
// Push has returned.
type Ticket struct {
	// Immutable after NewTicket.
	prio    int
	created time.Time
	meta    any
	rawLen  int
	done    chan struct{} // closed when outcome is final

	// Guarded by b.mu once pushed.
	b          *Buffer
	q          *pqueue // the dispatch queue holding it (global or pinned)
	body       []byte
	backend    string
	seq        uint64 // push order, FIFO tie-break
	size       int64  // bytes charged against MaxBytes
	state      uint8
	compressed bool
	ztried     bool // Push tried compressing its own body
	outcome    Outcome

	qprev, qnext *Ticket // in q's priority bucket
	aprev, anext *Ticket // in the buffer's age list
}

// NewTicket returns a ticket for a request of the given priority (clamped to
// [MinPriority, MaxPriority]), whose body bytes are already read, optionally
// pinned to backend (empty: any backend). meta is the caller's own request
// data, returned by Meta and never looked at by the queue.
//
// The buffer keeps body until release; compression (overflow Compress) only
// saves memory if the caller keeps no other reference to it.
func NewTicket(priority int, body []byte, backend string, meta any) *Ticket {
	return &Ticket{
		prio:    clampPriority(priority),
		created: time.Now(),
		meta:    meta,
		rawLen:  len(body),
		body:    body,
		backend: backend,
		done:    make(chan struct{}),
	}
}

// Wait blocks until the ticket is released or rejected, and returns that
// Outcome with a nil error. If ctx ends first (the client went away), the
// ticket is removed from the buffer and its bytes are freed (or, if it was
// released in that same instant, its replay slot is given back) and Wait
// returns the context's error; the caller then must not forward the request,
// and Done is not needed. A rejection that raced with ctx is still reported
// as the rejection. Wait must follow Push: on a ticket that was never pushed it
// only returns when ctx ends. After Push has failed, Wait returns the
// rejection at once. A Wait after one that gave up returns an error wrapping
// context.Canceled.
func (t *Ticket) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-t.done: // already decided (pass-through): skip the two-way select
		return t.finalOutcome()
	default:
	}
	select {
	case <-t.done:
		return t.finalOutcome()
	case <-ctx.Done():
	}
	if b := t.b; b != nil {
		if out, decided := b.abandon(t); decided {
			return out, nil
		}
	}
	return Outcome{Reason: ReasonCancelled}, fmt.Errorf("wait for buffered request: %w", ctx.Err())
}

// finalOutcome is Wait's result once t.done is closed.
func (t *Ticket) finalOutcome() (Outcome, error) {
	if t.outcome.Reason == ReasonCancelled {
		// An earlier Wait gave up on this ticket.
		return t.outcome, fmt.Errorf("wait for buffered request: %w", context.Canceled)
	}
	return t.outcome, nil
}

// Body returns the request body: the bytes given to NewTicket, or a fresh
// decompressed copy if the buffer compressed them. The returned slice must
// not be modified. The error is non-nil only if decompression failed, which
// means memory corruption or a bug, never bad client input.
func (t *Ticket) Body() ([]byte, error) {
	var (
		body       []byte
		compressed bool
		b          = t.b
	)
	if b == nil {
		return t.body, nil
	}
	b.mu.Lock()
	body, compressed = t.body, t.compressed
	b.mu.Unlock()
	if !compressed {
		return body, nil
	}
	out, err := b.zstd.decode(body, t.rawLen)
	if err != nil {
		return nil, fmt.Errorf("decompress buffered request body (%d bytes): %w", len(body), err)
	}
	return out, nil
}

// Compressed reports whether the buffer holds the body zstd-compressed.
func (t *Ticket) Compressed() bool {
	if b := t.b; b != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
	}
	return t.compressed
}

// Done gives back the replay slot of a released ticket, so pacing can
// release the next one. Call it once the backend exchange is finished. It
// is a no-op for a ticket that was not released, and after the first call.
func (t *Ticket) Done() {
	if b := t.b; b != nil {
		b.done(t)
	}
}

// Priority returns the ticket's priority after clamping.
func (t *Ticket) Priority() int { return t.prio }

// Age returns the time since NewTicket.
func (t *Ticket) Age() time.Duration { return time.Since(t.created) }

// Meta returns the value given to NewTicket.
func (t *Ticket) Meta() any { return t.meta }

// Size returns the uncompressed body length.
func (t *Ticket) Size() int { return t.rawLen }

// Backend returns the backend the ticket is pinned to, or "" if any backend
// may serve it (never pinned, or unpinned by Buffer.DropBackend).
func (t *Ticket) Backend() string {
	if b := t.b; b != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
	}
	return t.backend
}
