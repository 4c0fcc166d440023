package zdhandoff

import "github.com/zdtools/zd/pkg/fdpass"

// The conversation on a handoff socket, one connection per request, every
// message a frame (fdpass.WriteMsg) carrying the protocol version:
//
//	taker → server  request{op: "take", names, release}
//	server → taker  reply{ok} then the descriptors (fdpass.Send), or reply{ok: false, error}
//	taker → server  status{op: "exec"} when it is about to exec (release only), then
//	                the connection closes at the exec (close-on-exec), or
//	                status{op: "failed", error} if the exec failed.
//
// "ls" is request{op: "ls"} answered by reply{ok, fds} without descriptors.
// A refused peer gets reply{ok: false, error} before anything else.

// maxMsg bounds one frame of the conversation (an ls reply lists up to
// maxTakeFDs descriptions).
const maxMsg = 64 + maxTakeFDs*1100

const (
	opTake   = "take"
	opLs     = "ls"
	opExec   = "exec"
	opFailed = "failed"
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
}

const protoVersion = fdpass.Version
