// Package statedir names and guards the zd state directory, the one place
// where zd-run, zd-queue, zd-handoff and zdctl meet: control sockets, the
// worker table, snapshots and pid files.
//
// A typical daemon start:
//
//	dir := statedir.Resolve(flagStateDir, flagName, os.Getenv)
//	if err := statedir.Ensure(dir); err != nil {
//		return err // a *statedir.Error: Message and Hint for the user
//	}
//	sock := filepath.Join(dir, statedir.RunSock)
//
// Everything written here is replaced atomically (WriteFileAtomic), so a
// reader sees either the old or the new file, never a half-written one.
package statedir

// Names of the files in a state directory. They are part of the contract
// between the zd programs; never rename one.
const (
	RunSock      = "run.sock"        // zd-run control socket
	QueueSock    = "queue.sock"      // zd-queue control socket
	HandoffSock  = "handoff.sock"    // zd-handoff rendezvous socket
	WorkersFile  = "workers.msgpack" // worker table published by zd-run
	SnapshotsDir = "snapshots"       // *.zds snapshot files
	RunPID       = "zd-run.pid"      // pid file of zd-run
	QueuePID     = "zd-queue.pid"    // pid file of zd-queue
)

// DefaultName is the service name used when none is given.
const DefaultName = "default"
