package control

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// The frames as they travel. Pointers tell a missing key from a zero value.

type requestFrame struct {
	V    int    `msgpack:"v"`
	Op   string `msgpack:"op"`
	Args any    `msgpack:"args,omitempty"`
}

type requestIn struct {
	V    *int               `msgpack:"v"`
	Op   string             `msgpack:"op"`
	Args msgpack.RawMessage `msgpack:"args"`
}

type eventFrame struct {
	V     int                `msgpack:"v"`
	Event msgpack.RawMessage `msgpack:"event"`
}

type replyFrame struct {
	V      int                `msgpack:"v"`
	OK     bool               `msgpack:"ok"`
	Result msgpack.RawMessage `msgpack:"result,omitempty"`
	Error  *Error             `msgpack:"error,omitempty"`
}

type responseIn struct {
	V      *int               `msgpack:"v"`
	OK     *bool              `msgpack:"ok"`
	Result msgpack.RawMessage `msgpack:"result"`
	Error  *Error             `msgpack:"error"`
	Event  msgpack.RawMessage `msgpack:"event"`
}

// Cred is a peer's credentials as the kernel reports them (SO_PEERCRED).
type Cred struct {
	PID int `msgpack:"pid"`
	UID int `msgpack:"uid"`
	GID int `msgpack:"gid"`
}

// Request is one decoded request, as a Handler sees it.
type Request struct {
	Op   string
	Args msgpack.RawMessage // nil when the request had no args
	Peer Cred
}

// Decode decodes the request's args into v. Missing args leave v as it is.
// On failure it returns a "bad-request" *Error naming the op, ready to be
// returned by the handler.
func (r *Request) Decode(v any) error {
	if len(r.Args) == 0 {
		return nil
	}
	if err := Unmarshal(r.Args, v); err != nil {
		return &Error{
			Code:    CodeBadRequest,
			Message: fmt.Sprintf("bad arguments for %s: %v", r.Op, err),
			Hint:    "use zdctl and daemons from the same zd release",
		}
	}
	return nil
}
