package supervisor

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// The main goroutine stays on the process's main thread (an init-time
// LockOSThread does that). ServeForks turns it into the fork thread: every
// worker is then a child of the main thread, which is the one thread that
// survives any execve of the process (execve from another thread makes that
// thread the leader and ends the old one, which would fire the workers'
// PR_SET_PDEATHSIG at the second self-upgrade).
func init() { runtime.LockOSThread() }

// Forker is the main thread serving process starts and the self-exec for
// the supervisors of this process. Pass it in Config.Forker.
type Forker struct {
	reqC chan forkReq
}

// ServeForks runs f on another goroutine and serves forks on the calling
// goroutine until f returns; it returns f's result. When the caller is not
// the main goroutine on the main thread (e.g. inside a test), f gets a nil
// Forker and each supervisor forks from a thread of its own, which is fine
// except across repeated self-upgrades.
func ServeForks(f func(*Forker) int) int {
	if unix.Gettid() != os.Getpid() {
		return f(nil)
	}
	fk := &Forker{reqC: make(chan forkReq)}
	done := make(chan int, 1)
	go func() { done <- f(fk) }()
	for {
		select {
		case code := <-done:
			return code
		case r := <-fk.reqC:
			r.reply <- r.proc.do(r)
		}
	}
}
