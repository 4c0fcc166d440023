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
// priority (across the unpinned queue and every backend's queue). Unpinned
// tickets are released while the buffer is not paused; tickets pinned to a
// backend also need that backend not paused (PauseBackend, ResumeBackend).
// DropBackend unpins a gone backend's tickets rather than rejecting them:
// they were never sent, so any backend may serve them. At most
// ReplayConcurrency released tickets may be not yet Done, so a resume
// doesn't stampede new workers.
//
// Decisions worth knowing:
//
//   - Overflow Oldest evicts the oldest ticket of the lowest priority held,
//     never one of higher priority than the newcomer (see Oldest).
//   - The limits only apply to tickets that are held: a Push that can be
//     released at once is never refused for size.
//   - Priorities are clamped to [MinPriority, MaxPriority], 64 levels, so
//     finding the next ticket is a bitmap scan, not a sort; releasing 5,000
//     tickets in order takes well under a millisecond (BENCH.md).
//   - One mutex guards the state; see Buffer for why not an owner goroutine.
package queue
