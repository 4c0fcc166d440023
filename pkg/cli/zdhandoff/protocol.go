package zdhandoff

// The conversation on a handoff socket, one connection per request, every
// message a frame (fdpass.WriteMsg) carrying the protocol version:
//
//	taker → server  request{op: "take", names, release}
//	server → taker  reply{ok} then the descriptors (fdpass.Send), or reply{ok: false, error}
//
// "ls" is request{op: "ls"} answered by reply{ok, pid, fds} without descriptors.
// A refused peer gets reply{ok: false, error} before anything else.
//
// Version 2 changed only the release (take --release); ls and a plain take
// are the same in both versions, so clients send them as version 1 and
// servers of either version answer them. A release (version 2) goes on
// after the descriptors:
//
//	taker → server      status{op: "exec"} when it is about to exec, or
//	                    status{op: "failed", error} if the exec failed.
//	                    The connection survives the exec: CMD gets it at
//	                    the descriptor named by $ZD_HANDOFF_RELEASE_FD.
//	successor → server  status{op: "ready", pid, path, socket} once the successor
//	                    (a zd-handoff serve) answers on its own socket at
//	                    path, not yet at the handoff path, and its child is
//	                    ready (READY=1 with --notify, else alive after --settle);
//	                    socket is its --socket, which must be the server's.
//	server → successor  status{op: "go"} once an ls at path answered from
//	                    pid, or status{op: "abort", error} (also sent when
//	                    the server's --release-timeout runs out first).
//	successor → server  status{op: "published"} once its socket is renamed
//	                    onto the handoff path; the server checks that an ls
//	                    there answers from pid, then stops accepting and
//	                    stops its child.
//
// If the connection ends (EOF) before "published", the successor is gone
// and the server goes on serving; if it ends before "go", the server is
// gone and the successor publishes its socket anyway.

// maxMsg bounds one frame of the conversation (an ls reply lists up to
// maxTakeFDs descriptions).
const maxMsg = 64 + maxTakeFDs*1100

const (
	opTake      = "take"
	opLs        = "ls"
	opExec      = "exec"
	opFailed    = "failed"
	opReady     = "ready"
	opGo        = "go"
	opAbort     = "abort"
	opPublished = "published"
)

type request struct {
	V       int      `msgpack:"v"`
	Op      string   `msgpack:"op"`
	Names   []string `msgpack:"names,omitempty"`
	Release bool     `msgpack:"release,omitempty"`
}

type replyError struct {
	Message string `msgpack:"message"`
	Hint    string `msgpack:"hint,omitempty"`
}

type offer struct {
	Name   string `msgpack:"name" json:"name"`
	Family string `msgpack:"family" json:"family"`
	Type   string `msgpack:"type" json:"type"`
	Local  string `msgpack:"local" json:"local"`
}

type reply struct {
	V     int         `msgpack:"v"`
	OK    bool        `msgpack:"ok"`
	PID   int         `msgpack:"pid"`
	Error *replyError `msgpack:"error,omitempty"`
	FDs   []offer     `msgpack:"fds,omitempty"`
}

type status struct {
	V     int    `msgpack:"v"`
	Op    string `msgpack:"op"`
	Error string `msgpack:"error,omitempty"`
	PID   int    `msgpack:"pid,omitempty"`
	Path  string `msgpack:"path,omitempty"`
	// Socket is, in a ready status, the handoff path the successor will
	// take: it must be the server's own.
	Socket string `msgpack:"socket,omitempty"`
}

// Protocol versions: protoVersion is the newest this side speaks (release
// with confirmation), baseVersion the one of ls and plain take.
const (
	protoVersion = 2
	baseVersion  = 1
)
