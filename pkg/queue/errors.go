package queue

import (
	"errors"
	"fmt"
)

// Errors returned by Push; test with errors.Is.
var (
	// ErrFull means the buffer is at MaxBytes or MaxCount and the overflow
	// strategy could not make room; answer 503 with Retry-After.
	ErrFull = errors.New("request buffer full")
	// ErrTooLarge means the body plus the per-entry overhead is larger
	// than MaxBytes on its own; answer 413.
	ErrTooLarge = errors.New("request body larger than the whole request buffer")
	// ErrClosed means the Buffer was closed; answer 503.
	ErrClosed = errors.New("request buffer closed")
	// ErrReused means the ticket was already pushed once.
	ErrReused = errors.New("ticket already pushed")
)

// Limit names the limit a LimitError hit.
type Limit string

// The limits a LimitError can name.
const (
	LimitBytes Limit = "bytes"
	LimitCount Limit = "count"
)

// LimitError is the error Push returns when a limit refuses a ticket. It
// wraps ErrFull or ErrTooLarge.
type LimitError struct {
	Limit    Limit    // which limit: LimitBytes or LimitCount
	Max      int64    // the limit's value
	Held     int64    // bytes or tickets held when the ticket was refused
	Need     int64    // bytes or tickets the refused ticket needed
	Strategy Overflow // the overflow strategy that was applied
	Err      error    // ErrFull or ErrTooLarge
}

// Error says which limit refused the ticket, its value and what was held.
func (e *LimitError) Error() string {
	if errors.Is(e.Err, ErrTooLarge) {
		return fmt.Sprintf("%v: needs %d bytes, buffer limit is %d bytes", e.Err, e.Need, e.Max)
	}
	return fmt.Sprintf("%v: %s limit %d reached (holding %d, request needs %d, overflow strategy %s)",
		e.Err, e.Limit, e.Max, e.Held, e.Need, e.Strategy)
}

// Unwrap returns ErrFull or ErrTooLarge.
func (e *LimitError) Unwrap() error { return e.Err }
