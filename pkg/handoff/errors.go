package handoff

// Kind sorts errors by what the caller can do about them.
type Kind int

const (
	KindFailure    Kind = iota // anything else
	KindUsage                  // the caller asked for something impossible (a path that is not a socket)
	KindNotRunning             // nothing serves on the path (no file, or a stale one)
	KindTimeout                // the peer did not answer within the context's deadline
)

// Error is a failure of this package with what it was doing and, where
// it knows one, what to do about it. Step names the part of the socket's
// life that failed ("mkdir", "bind", "rename", "stat"), for callers that
// phrase their own hints; it is "" for conversation errors.
type Error struct {
	Kind    Kind
	Step    string
	Message string // what failed; "" when Err says it all
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
