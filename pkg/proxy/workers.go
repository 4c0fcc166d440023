package proxy

import "time"

// Client connections (HTTP/1.1 on the fast path) and HTTP/2 streams are
// served on pooled goroutines. A new goroutine starts with the runtime's
// smallest stack and serving a request needs more, so a goroutine per
// stream or connection paid a stack copy each: under callgrind about
// 12,000 instructions of the 45,000 an h2c request cost, and a quarter of
// a Connection: close request's. A worker that finished its task waits a
// little for the next one, its stack already grown, and exits when none
// comes or the Proxy closes.

// task is work for a pooled goroutine: an HTTP/2 stream's handler or an
// HTTP/1.1 connection's serve loop.
type task interface{ runTask() }

// workerIdle is how long an idle worker waits for another task.
const workerIdle = 2 * time.Second

// spawn runs t on an idle worker, or on a new one if none is idle.
func (p *Proxy) spawn(t task) {
	select {
	case p.work <- t:
	default:
		go p.worker(t)
	}
}

func (p *Proxy) worker(t task) {
	t.runTask()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case t = <-p.work:
			t.runTask()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-p.ctx.Done():
			return
		}
	}
}

func (st *h2stream) runTask() { st.run() }
func (hc *h1conn) runTask()   { hc.serve() }
