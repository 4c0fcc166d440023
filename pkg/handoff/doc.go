// Package handoff is the fd-handoff protocol of zd-handoff: a server offers
// the file descriptors it holds (listening sockets, mostly) on a unix
// socket, a taker receives them over SCM_RIGHTS, and, for a release, the
// taker's successor proves itself before the server lets go of the socket
// path and stops. zd-handoff's CLI is a command tree over it; zd-queue's
// own upgrade is meant to use it too.
//
// The conversation, one connection per request, every message a frame
// (fdpass.WriteMsg) carrying the protocol version:
//
//	taker → server  Request{op: "take", names, release}
//	server → taker  Reply{ok} then the descriptors (fdpass.Send), or Reply{ok: false, error}
//
// "ls" is Request{op: "ls"} answered by Reply{ok, pid, fds} without descriptors.
// A refused peer gets Reply{ok: false, error} before anything else.
//
// Version 2 changed only the release (take --release); ls and a plain take
// are the same in both versions, so clients send them as version 1 and
// servers of either version answer them. A release (version 2) goes on
// after the descriptors:
//
//	taker → server      Status{op: "exec"} when it is about to exec, or
//	                    Status{op: "failed", error} if the exec failed.
//	                    The connection survives the exec: the command gets
//	                    it at the descriptor named by $ZD_HANDOFF_RELEASE_FD.
//	successor → server  Status{op: "ready", pid, path, socket} once the successor
//	                    answers on its own socket at path, not yet at the
//	                    handoff path, and is ready (for zd-handoff serve:
//	                    its child sent READY=1, or stayed up for --settle);
//	                    socket is the handoff path it will take, which must
//	                    be the server's.
//	server → successor  Status{op: "go"} once an ls at path answered from
//	                    pid, or Status{op: "abort", error} (also sent when
//	                    the server's release timeout runs out first).
//	successor → server  Status{op: "published"} once its socket is renamed
//	                    onto the handoff path; the server checks that an ls
//	                    there answers from pid, then stops accepting.
//
// If the connection ends (EOF) before "published", the successor is gone
// and the server goes on serving; if it ends before "go", the server is
// gone and the successor publishes its socket anyway.
//
// A server, in outline:
//
//	sock, err := handoff.Listen(path)          // or Bind, for a successor
//	srv := handoff.NewServer(handoff.Config{Log: log, Files: files, Offers: offers,
//		Timeout: 30 * time.Second, ReleaseTimeout: time.Minute, Socket: sock})
//	srv.Start()
//	defer srv.Close()
//	for ev := range srv.Events() { ... }       // HandedOver, Released
//
// A taker: conn, rep, err := handoff.Dial(ctx, path, handoff.Request{...});
// then fdpass.Recv(ctx, conn, handoff.MaxFDs).
//
// What this package carries is descriptors and their names; the state a
// process hands on besides them (zd-run's worker table, later zd-queue's
// sessions) is its own, in the one carried-state envelope described in
// docs/architecture.md.
package handoff
