package load

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Class is the outcome of one request.
type Class uint8

// The outcomes of a request. ClassOK is a complete 2xx response.
const (
	ClassOK      Class = iota // a complete 2xx response
	ClassRefused              // the connection was refused (ECONNREFUSED)
	ClassReset                // reset, broken pipe, or closed before a complete response
	ClassTimeout              // no complete response within the timeout
	ClassNon2xx               // a complete response with a status outside 200-299
	ClassOther                // any other error (bad response, local resource limits)
	numClasses
)

var classNames = [numClasses]string{"ok", "refused", "reset", "timeout", "non2xx", "other"}

// String returns the class's name as used in reports: ok, refused, reset,
// timeout, non2xx or other.
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// Classify returns the class of a request that ended with err (nil for a
// complete response) and HTTP status (ignored when err is not nil).
func Classify(err error, status int) Class {
	if err == nil {
		if status >= 200 && status <= 299 {
			return ClassOK
		}
		return ClassNon2xx
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err), errors.Is(err, syscall.ETIMEDOUT):
		return ClassTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, net.ErrClosed):
		return ClassReset
	}
	return ClassOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
