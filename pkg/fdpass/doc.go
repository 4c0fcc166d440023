// Package fdpass sends and receives file descriptors over unix stream
// sockets with SCM_RIGHTS, each handoff described by a versioned msgpack
// header (name, family, type and local address of every descriptor), and
// checks who is on the other end (SO_PEERCRED). It is the ground floor of
// zd and imports no other zd package.
//
// A handoff on a connected *net.UnixConn:
//
//	err := fdpass.Send(ctx, c, []fdpass.FD{{Name: "web", Family: "inet", Type: "stream", File: f}})
//	fds, err := fdpass.Recv(ctx, c, 1024) // every received fd is close-on-exec
//
// Messages of a conversation around a handoff travel as frames (WriteMsg,
// ReadMsg): a 4-byte big-endian length and a msgpack value.
package fdpass
