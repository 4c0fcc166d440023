package sdnotify

import (
	"errors"
	"fmt"
	"strings"
)

// Well-known keys of the sd_notify protocol.
const (
	KeyReady             = "READY"               // "1": startup finished, serving
	KeyReloading         = "RELOADING"           // "1": reloading configuration; READY=1 follows
	KeyStopping          = "STOPPING"            // "1": shutting down
	KeyStatus            = "STATUS"              // free-form one-line status for humans
	KeyWatchdog          = "WATCHDOG"            // "1": keep-alive ping; "trigger": fail now
	KeyExtendTimeoutUsec = "EXTEND_TIMEOUT_USEC" // ask for more time for the current phase
	KeyMainPID           = "MAINPID"             // the service's main pid changed
	KeyErrno             = "ERRNO"               // errno-style failure code
	KeyMonotonicUsec     = "MONOTONIC_USEC"      // CLOCK_MONOTONIC time of a RELOADING=1
)

// Short names for the keys above, for code that reads better with them
// (m.Is(sdnotify.Ready)). MONOTONIC_USEC has none: MonotonicUsec is the
// clock function.
const (
	Ready             = KeyReady
	Reloading         = KeyReloading
	Stopping          = KeyStopping
	Status            = KeyStatus
	Watchdog          = KeyWatchdog
	ExtendTimeoutUsec = KeyExtendTimeoutUsec
	MainPID           = KeyMainPID
	Errno             = KeyErrno
)

// MaxDatagram is the largest notification accepted, as in systemd.
const MaxDatagram = 4096

// Field is one KEY=VALUE assignment of a notification.
type Field struct {
	Key   string
	Value string
}

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("malformed notification")

// Parse decodes a notification datagram: KEY=VALUE assignments separated by
// newlines; empty lines are skipped. A key is one or more of A-Z, 0-9 and
// '_'; a value is any bytes but NUL and newline, and may be empty. Parse
// returns the fields in order (a key may repeat; the last one wins in
// Message.Get), or an error wrapping ErrMalformed for an empty datagram, one
// larger than MaxDatagram, a NUL byte, a line without '=', or a bad key.
func Parse(b []byte) ([]Field, error) {
	if len(b) > MaxDatagram {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxDatagram)
	}
	var fields []Field
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%w: line %d has no '='", ErrMalformed, n+1)
		}
		if !validKey(k) {
			return nil, fmt.Errorf("%w: line %d: invalid key %q", ErrMalformed, n+1, k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%w: line %d: NUL byte in the value of %s", ErrMalformed, n+1, k)
		}
		fields = append(fields, Field{Key: k, Value: v})
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: no assignment", ErrMalformed)
	}
	return fields, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Format encodes fields as a notification datagram, the inverse of Parse.
// It returns an error for a field that Parse would refuse.
func Format(fields []Field) ([]byte, error) {
	var sb strings.Builder
	for _, f := range fields {
		if !validKey(f.Key) {
			return nil, fmt.Errorf("format notification: invalid key %q", f.Key)
		}
		if strings.ContainsAny(f.Value, "\n\x00") {
			return nil, fmt.Errorf("format notification: value of %s contains a newline or NUL", f.Key)
		}
		sb.WriteString(f.Key)
		sb.WriteByte('=')
		sb.WriteString(f.Value)
		sb.WriteByte('\n')
	}
	if sb.Len() > MaxDatagram {
		return nil, fmt.Errorf("format notification: %d bytes, more than %d", sb.Len(), MaxDatagram)
	}
	return []byte(sb.String()), nil
}
