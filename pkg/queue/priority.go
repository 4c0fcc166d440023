package queue

import (
	"net/http"
	"strconv"
	"strings"
)

// The priority rule of ParsePriority.
const (
	// DefaultPriority is the priority of a request with no valid priority
	// header.
	DefaultPriority = 0
	// NumericMin and NumericMax bound the integer priority header.
	NumericMin = -9
	NumericMax = 9
	// FlagStep is the priority a flag header at position i (i ≥ 1) in the
	// header list gives: FlagStep*i, so x-urgent → 10, x-critical → 20, and
	// any flag beats any integer priority.
	FlagStep = 10
)

// DefaultPriorityHeaders returns the default REQUEST_PRIORITY_HEADERS list:
// x-priority, x-urgent, x-critical.
func DefaultPriorityHeaders() []string {
	return []string{"x-priority", "x-urgent", "x-critical"}
}

// ParsePriority returns the priority of a request from its headers, by this
// rule over names (REQUEST_PRIORITY_HEADERS, in order):
//
//   - names[0] is the integer header: its value, an optionally signed
//     decimal integer, is clamped to [NumericMin, NumericMax]
//     ("x-priority: 3" → 3, "x-priority: 500" → 9, "-2" → -2).
//   - every later names[i] is a flag header: a true value (1, true, yes, on;
//     any case) gives priority FlagStep*i ("x-urgent: true" → 10,
//     "x-critical: 1" → 20); false values (0, false, no, off) give nothing.
//   - the highest priority given by any header wins; with none, the result
//     is DefaultPriority. A header may repeat or hold a comma-separated
//     list; every element counts.
//
// Malformed values are ignored, never an error. The result is clamped to
// [MinPriority, MaxPriority].
func ParsePriority(h http.Header, names []string) int {
	best, found := DefaultPriority, false
	for i, name := range names {
		for _, line := range headerValues(h, name) {
			for v := range strings.SplitSeq(line, ",") {
				p, ok := headerPriority(i, strings.TrimSpace(v))
				if ok && (!found || p > best) {
					best, found = p, true
				}
			}
		}
	}
	return clampPriority(best)
}

func headerPriority(pos int, v string) (int, bool) {
	if pos == 0 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			// An out-of-range integer is still a clear wish; clamp it.
			ne, ok := err.(*strconv.NumError)
			if !ok || ne.Err != strconv.ErrRange {
				return 0, false
			}
		}
		return int(min(max(n, NumericMin), NumericMax)), true
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return FlagStep * pos, true
	}
	return 0, false
}

// headerValues is h.Values(name) without allocating for the usual short,
// lower-case configured names: it canonicalizes into a stack buffer, and a
// map index by string(bytes) does not copy.
func headerValues(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) > len(buf) {
		return h.Values(name)
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case !isTokenByte(c):
			// net/http leaves keys that are not tokens alone; so do we.
			return h.Values(name)
		}
		buf[i] = c
		upper = c == '-'
	}
	return h[string(buf[:len(name)])]
}

// isTokenByte reports whether c may appear in an HTTP token (RFC 9110).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
