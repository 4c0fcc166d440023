package cmdkit

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"
)

// Exit codes shared by all zd programs. They are documented in the README and
// the man pages; scripts depend on them, so never renumber one.
const (
	ExitOK            = 0 // success
	ExitFailure       = 1 // the operation failed; the message says why
	ExitUsage         = 2 // bad flags, arguments or input; nothing was changed
	ExitReloadAborted = 3 // reload aborted; the old generation is still serving
	ExitNotRunning    = 4 // no daemon answers on the control socket
	ExitUnhealthy     = 5 // the service answers but is degraded (zdctl health)
	ExitTimeout       = 6 // a bounded wait ran out before the operation finished
)

// Error is an error a user can act on: what went wrong, and a hint saying
// what to do about it. Code is the process exit code.
type Error struct {
	Code    int
	Message string
	Hint    string
	Err     error
}

func (e *Error) Error() string {
	switch {
	case e.Message != "" && e.Err != nil:
		return e.Message + ": " + e.Err.Error()
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	}
	return "unknown error"
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode implements cli.ExitCoder.
func (e *Error) ExitCode() int { return e.Code }

// UsageError reports bad input (exit 2) with a hint.
func UsageError(hint, format string, a ...any) *Error {
	return &Error{Code: ExitUsage, Message: fmt.Sprintf(format, a...), Hint: hint}
}

// Failf reports a failed operation with the given exit code and hint.
func Failf(code int, hint, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...), Hint: hint}
}

// Wrap attaches an exit code and hint to err, keeping it as the cause.
func Wrap(err error, code int, hint string) *Error {
	return &Error{Code: code, Err: err, Hint: hint}
}

// NotBuilt is returned by commands whose capability has not landed yet. It
// never pretends to work: it exits 1 and names the issue topic to follow.
func NotBuilt(what, topic string) *Error {
	return &Error{
		Code:    ExitFailure,
		Message: what + " is not built yet",
		Hint:    "this arrives with the issue on " + topic,
	}
}

// Code returns the exit code for err: 0 for nil, the code of an *Error or a
// cli.ExitCoder found in the chain, else ExitFailure.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ze *Error
	if errors.As(err, &ze) {
		return ze.Code
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return ExitFailure
}

// Report prints err to w as "prog: message" followed by "hint: ..." when
// there is a hint, and returns the exit code.
func Report(w io.Writer, prog string, err error) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(w, "%s: %s\n", prog, err.Error())
	var ze *Error
	if errors.As(err, &ze) && ze.Hint != "" {
		fmt.Fprintf(w, "hint: %s\n", ze.Hint)
	}
	return Code(err)
}
