// Package listenfd creates listening sockets from address specs and passes
// them to programs the way systemd does: LISTEN_FDS, LISTEN_PID and
// LISTEN_FDNAMES, with the descriptors at 3, 4, ... It is the ground floor
// of zd and imports no other zd package.
//
// Producing sockets for a command run in place:
//
//	spec, err := listenfd.ParseSpec("web=tcp://127.0.0.1:8080?backlog=1024")
//	f, err := spec.Listen()
//	err = listenfd.Exec(path, argv, os.Environ(), []*os.File{f}) // returns only on error
//
// Consuming them (in the program that was started that way):
//
//	files, err := listenfd.Inherited(true) // nil, nil when none are ours
//
// Exec replaces whatever is open at descriptors 3, 4, ...; call it from a
// fresh process (a re-exec shim) so nothing of the Go runtime lives there
// (see Exec).
package listenfd
