// Package queue is zd-queue's request buffer: a bounded, prioritised holding
// area for HTTP requests that arrive while no backend can take them, and the
// paced release that replays them once one can.
//
// The proxy's handler, for a request that must wait:
//
//	t := queue.NewTicket(queue.ParsePriority(r.Header, names), body, pinnedBackend, r)
//	if err := buf.Push(t); err != nil {
//		// errors.Is(err, queue.ErrTooLarge): 413; otherwise 503 with
//		// Retry-After: buf.RetryAfter()
//	}
//	out, err := t.Wait(r.Context())
//	if err != nil {
//		return // the client went away; the ticket is gone from the buffer
//	}
//	if !out.Released {
//		// 503 + Retry-After; out.Reason says why (evicted, expired, ...)
//	}
//	defer t.Done() // give the replay slot back
//	body, err := t.Body()
//	// forward the request with body to t.Backend(), or any backend if ""
//
// Limits bound what is held by bytes, count and age (MaxBytes, MaxCount,
// MaxAge); the Overflow strategy (Reject, Oldest, Compress) decides what
// happens at the byte and count limits; tickets older than MaxAge are
// rejected by a sweeper goroutine that Close stops.
//
// Release order is highest priority first, first in first out within a
// priority. Unpinned tickets are released while the buffer is not paused;
// tickets pinned to a backend also need that backend not paused
// (PauseBackend, ResumeBackend, DropBackend). At most ReplayConcurrency
// released tickets may be not yet Done, so a resume doesn't stampede new
// workers.
package queue
