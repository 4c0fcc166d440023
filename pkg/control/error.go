package control

import (
	"errors"
	"fmt"
)

// Well-known error codes. Clients branch on the code, never on the message.
const (
	CodeBadRequest       = "bad-request"       // malformed frame, args that don't decode or make sense
	CodeUnknownOp        = "unknown-op"        // the server does not know this op
	CodePermissionDenied = "permission-denied" // the peer's credentials are not allowed
	CodeVersionMismatch  = "version-mismatch"  // the peers speak different protocol versions
	CodeBusy             = "busy"              // another operation is in progress, or too many connections
	CodeAborted          = "aborted"           // the operation started and was rolled back (e.g. reload)
	CodeInternal         = "internal"          // a bug or unexpected failure in the server
	CodeTimeout          = "timeout"           // a bounded wait ran out
	CodeNotFound         = "not-found"         // the named thing (worker, backend, snapshot) does not exist
	CodeUnavailable      = "unavailable"       // the server is starting or stopping and cannot do it now
)

// Error is an error reply: a code for programs, a message and a hint for
// people. Handlers return one to send it as is.
type Error struct {
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
	Hint    string `msgpack:"hint,omitempty"`
}

// Error returns the message (the code if there is none); the hint is for
// the CLI to print on its own line.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &control.Error{Code: control.CodeBusy}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given code and hint and a formatted
// message.
func Errorf(code, hint, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...), Hint: hint}
}

// UnknownOp is the reply for an op a handler does not know.
func UnknownOp(op string) *Error {
	return &Error{
		Code:    CodeUnknownOp,
		Message: fmt.Sprintf("unknown operation %q", op),
		Hint:    "the daemon may be older than this zdctl; check both with --version",
	}
}

// CodeOf returns the code of the *Error in err's chain, or "" if none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrNotRunning is wrapped by client errors when nothing listens on the
// control socket: the file is missing or the connection is refused.
var ErrNotRunning = errors.New("daemon not running")

// ErrFrameTooLarge is wrapped by ReadFrame and WriteFrame errors for frames
// above the size limit.
var ErrFrameTooLarge = errors.New("control frame too large")

func versionMismatch(got int) *Error {
	return &Error{
		Code:    CodeVersionMismatch,
		Message: fmt.Sprintf("control protocol version %d is not supported (this side speaks %d)", got, ProtocolVersion),
		Hint:    "use zdctl and daemons from the same zd release",
	}
}
