package queue

import (
	"fmt"
	"strings"
	"time"
)

// Overflow is what Push does when a new ticket would take the buffer past
// MaxBytes or MaxCount (REQUEST_OVERFLOW_STRATEGY).
type Overflow int

const (
	// Reject refuses the new ticket: Push returns an error wrapping ErrFull
	// and the proxy answers 503 with Retry-After.
	Reject Overflow = iota
	// Oldest evicts held tickets to make room: the oldest ticket of the
	// lowest priority held goes first, and its Wait returns
	// Outcome{Reason: ReasonEvicted}. A ticket is never evicted for a new
	// one of lower priority; when only higher-priority tickets could make
	// room, the new ticket is refused as with Reject.
	Oldest
	// Compress zstd-compresses held bodies, oldest first, and keeps them
	// compressed in memory until release; only when that does not free
	// enough bytes is the new ticket refused. Compression cannot help the
	// count limit, so over MaxCount Compress behaves as Reject.
	Compress
)

// String returns the configuration name of o: "reject", "oldest" or
// "compress" (or "overflow(N)" for an invalid value).
func (o Overflow) String() string {
	switch o {
	case Reject:
		return "reject"
	case Oldest:
		return "oldest"
	case Compress:
		return "compress"
	}
	return fmt.Sprintf("overflow(%d)", int(o))
}

// ParseOverflow parses a REQUEST_OVERFLOW_STRATEGY value: "reject", "oldest"
// or "compress", case-insensitive, surrounding spaces ignored. Any other
// value is an error that lists the valid ones.
func ParseOverflow(s string) (Overflow, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "reject":
		return Reject, nil
	case "oldest":
		return Oldest, nil
	case "compress":
		return Compress, nil
	}
	return Reject, fmt.Errorf("unknown overflow strategy %q: use one of reject, oldest, compress", s)
}

// Defaults taken from the origin's configuration (REQUEST_BUFFER_SIZE_MB=10,
// REQUEST_BUFFER_TIME=30, max_requests_per_buffer=1000).
const (
	DefaultMaxBytes          = 10 << 20
	DefaultMaxCount          = 1000
	DefaultMaxAge            = 30 * time.Second
	DefaultReplayConcurrency = 64
	// DefaultEntryOverhead is the bytes charged per held ticket on top of
	// its body: the ticket itself (~300 B, see BENCH.md) plus a typical
	// proxied request's headers and URL kept alongside it.
	DefaultEntryOverhead = 1024
	// DefaultRetryAfter is advertised when neither Limits.RetryAfter nor
	// Limits.MaxAge is set.
	DefaultRetryAfter = 5 * time.Second
)

// Limits bound a Buffer. A zero MaxBytes, MaxCount or MaxAge means that limit
// is off; negative values are treated as zero.
type Limits struct {
	// MaxBytes bounds the bytes held: every ticket counts its body as
	// stored (compressed size once compressed) plus EntryOverhead.
	MaxBytes int64
	// MaxCount bounds the number of tickets held.
	MaxCount int
	// MaxAge bounds how long a ticket is held, counted from NewTicket;
	// older tickets are rejected with ReasonExpired.
	MaxAge time.Duration
	// Overflow is the strategy applied when MaxBytes or MaxCount would be
	// exceeded.
	Overflow Overflow
	// ReplayConcurrency bounds the tickets released but not yet Done;
	// zero means DefaultReplayConcurrency.
	ReplayConcurrency int
	// EntryOverhead is charged per ticket against MaxBytes on top of the
	// body; zero means DefaultEntryOverhead, negative means none.
	EntryOverhead int64
	// RetryAfter is advertised to rejected clients; zero means MaxAge, or
	// DefaultRetryAfter when MaxAge is off.
	RetryAfter time.Duration
}

// DefaultLimits returns the origin's defaults: 10 MiB, 1000 requests, 30 s,
// overflow reject, replay concurrency 64.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:          DefaultMaxBytes,
		MaxCount:          DefaultMaxCount,
		MaxAge:            DefaultMaxAge,
		Overflow:          Reject,
		ReplayConcurrency: DefaultReplayConcurrency,
	}
}

// normalize turns zero and negative fields into their documented meaning.
func (l Limits) normalize() Limits {
	l.MaxBytes = max(l.MaxBytes, 0)
	l.MaxCount = max(l.MaxCount, 0)
	l.MaxAge = max(l.MaxAge, 0)
	if l.Overflow < Reject || l.Overflow > Compress {
		l.Overflow = Reject
	}
	if l.ReplayConcurrency <= 0 {
		l.ReplayConcurrency = DefaultReplayConcurrency
	}
	switch {
	case l.EntryOverhead == 0:
		l.EntryOverhead = DefaultEntryOverhead
	case l.EntryOverhead < 0:
		l.EntryOverhead = 0
	}
	if l.RetryAfter <= 0 {
		l.RetryAfter = l.MaxAge
	}
	if l.RetryAfter <= 0 {
		l.RetryAfter = DefaultRetryAfter
	}
	return l
}

// RetryAfterSeconds returns the Retry-After value in whole seconds (rounded
// up, at least 1) for l after defaults are applied.
func (l Limits) RetryAfterSeconds() int {
	d := l.normalize().RetryAfter
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
