// Package supervisor is zd-run's engine: it runs N workers of an app on
// listening sockets it owns, tells when they are ready, replaces them
// without a refused connection (rolling, blue-green, exclusive), respawns
// crashed ones within limits, replaces ones past a memory limit, drains them
// (through zd-queue when it runs) before stopping them, publishes the worker
// table, answers run.sock, and re-execs zd-run in place keeping its workers.
//
// A sketch of zd-run's use (error handling left out):
//
//	func Main(...) int {
//		if isShim, code := supervisor.RunShim(os.Getenv, os.Stderr); isShim {
//			return code // this process was the worker exec shim
//		}
//		return supervisor.ServeForks(func(fk *supervisor.Forker) int {
//			s, _ := supervisor.New(supervisor.Config{
//				Command: []string{"./app"}, Workers: 4, StateDir: dir,
//				Listeners: []supervisor.Listener{{Name: "http", File: f}},
//				UID: -1, GID: -1, Forker: fk,
//			})
//			go srv.Serve(ctx, s.Handler(nil)) // run.sock (package control)
//			s.Run(ctx)                        // until Stop or ctx ends
//			return 0
//		})
//	}
//
// Processes: every fork and the final self-exec happen on the main thread
// (ServeForks), because PR_SET_PDEATHSIG follows the forking thread and only
// the main thread survives an execve. Workers are started through a re-exec
// of the supervisor's own binary (RunShim) that sets LISTEN_PID to the
// worker's own pid, applies credentials, rlimits and the cgroup, re-arms the
// death signal and execs the app. One reaper collects every exit (the
// process is a child subreaper), so nothing else may wait for children.
//
// State: a mutex guards the worker set; reloads, upgrades and memory
// replacements take the reload lock (they never interleave), run on the
// caller's goroutine and wait on per-worker channels (ready, exited), each
// wait bounded.
package supervisor
