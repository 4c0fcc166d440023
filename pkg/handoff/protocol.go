package handoff

// Protocol versions: Version is the newest this side speaks (release with
// confirmation), BaseVersion the one of ls and plain take.
const (
	Version     = 2
	BaseVersion = 1
)

// MaxFDs bounds how many descriptors one handoff carries.
const MaxFDs = 1 << 16

// MaxMsg bounds one frame of the conversation (an ls reply lists up to
// MaxFDs descriptions).
const MaxMsg = 64 + MaxFDs*1100

// EnvReleaseFD names the descriptor, in the command a releasing taker
// execs, of the connection to the releasing server.
const EnvReleaseFD = "ZD_HANDOFF_RELEASE_FD"

// Ops of requests (take, ls) and of release statuses (the rest).
const (
	OpTake      = "take"
	OpLs        = "ls"
	OpExec      = "exec"
	OpFailed    = "failed"
	OpReady     = "ready"
	OpGo        = "go"
	OpAbort     = "abort"
	OpPublished = "published"
)

// Request is what a client sends first.
type Request struct {
	V       int      `msgpack:"v"`
	Op      string   `msgpack:"op"`
	Names   []string `msgpack:"names,omitempty"`
	Release bool     `msgpack:"release,omitempty"`
}

// ReplyError is why a server refused a request, and what to do.
type ReplyError struct {
	Message string `msgpack:"message"`
	Hint    string `msgpack:"hint,omitempty"`
}

// Offer describes one descriptor on offer.
type Offer struct {
	Name   string `msgpack:"name" json:"name"`
	Family string `msgpack:"family" json:"family"`
	Type   string `msgpack:"type" json:"type"`
	Local  string `msgpack:"local" json:"local"`
}

// Reply is the server's answer to a Request.
type Reply struct {
	V     int         `msgpack:"v"`
	OK    bool        `msgpack:"ok"`
	PID   int         `msgpack:"pid"`
	Error *ReplyError `msgpack:"error,omitempty"`
	FDs   []Offer     `msgpack:"fds,omitempty"`
}

// Status is one message of a release after the descriptors went out.
type Status struct {
	V     int    `msgpack:"v"`
	Op    string `msgpack:"op"`
	Error string `msgpack:"error,omitempty"`
	PID   int    `msgpack:"pid,omitempty"`
	Path  string `msgpack:"path,omitempty"`
	// Socket is, in a ready status, the handoff path the successor will
	// take: it must be the server's own.
	Socket string `msgpack:"socket,omitempty"`
}
