package proxy

import "time"

// HTTP/2 stream handlers run on pooled goroutines. A new goroutine starts
// with the runtime's smallest stack and a request's handler needs more, so
// a goroutine per stream paid one stack copy per request: under callgrind
// about 12,000 instructions of the 45,000 an h2c request cost. A worker
// that finished a stream waits a little for the next one, its stack
// already grown, and exits when none comes or the Proxy closes.

// streamWorkerIdle is how long an idle worker waits for another stream.
const streamWorkerIdle = 2 * time.Second

// runStream runs st on an idle worker, or on a new one if none is idle.
func (p *Proxy) runStream(st *h2stream) {
	select {
	case p.streamWork <- st:
	default:
		go p.streamWorker(st)
	}
}

func (p *Proxy) streamWorker(st *h2stream) {
	st.run()
	idle := time.NewTimer(streamWorkerIdle)
	defer idle.Stop()
	for {
		select {
		case st = <-p.streamWork:
			st.run()
			idle.Reset(streamWorkerIdle)
		case <-idle.C:
			return
		case <-p.ctx.Done():
			return
		}
	}
}
