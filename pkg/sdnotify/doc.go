// Package sdnotify speaks systemd's sd_notify protocol in both directions:
// Notify sends one datagram to $NOTIFY_SOCKET (what an app, or zd-run under
// systemd, does), and Listen opens the socket a supervisor gives its workers
// and Receive reads their messages with the sender's credentials.
//
// A datagram is newline-separated KEY=VALUE assignments, e.g.
// "READY=1\nSTATUS=serving\n". The well-known keys are exported as
// constants (KeyReady, KeyReloading, KeyStopping, KeyStatus, ...).
//
// Sending:
//
//	sent, err := sdnotify.Notify(os.Getenv, "READY=1")
//
// Receiving, in a supervisor:
//
//	r, err := sdnotify.Listen(filepath.Join(stateDir, "notify.sock"))
//	...
//	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+r.Path())
//	for {
//		m, err := r.Receive(ctx)
//		if err != nil { break }
//		if v, _ := m.Get(sdnotify.KeyReady); v == "1" { ... m.PID is ready ... }
//	}
//
// Permissions: Listen creates a filesystem socket with mode 0600, so only
// the supervisor's user (and root) may send. Workers that run as another user
// (zd-run --user) need both search permission on every directory of the path
// and write permission on the socket: use an abstract name ("@zd-notify-..."),
// which the kernel does not check at all (the receiver still learns each
// sender's pid and uid from SO_PASSCRED, so it trusts only its own children),
// or call Receiver.Chown to hand the socket file to the workers' user and
// keep it in a directory they can search. The abstract name is the
// recommended choice: the state directory stays 0700.
package sdnotify
