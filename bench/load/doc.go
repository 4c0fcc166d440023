// Package load is the engine of zd-load, the HTTP load generator of zd's
// benchmarks. Unlike hey or vegeta it never retries a request, and it counts
// every outcome separately: ok, refused (ECONNREFUSED), reset (ECONNRESET,
// EPIPE, or the connection ending before a complete response), timeout,
// non-2xx and other. It speaks HTTP/1.1 itself on raw TCP connections so that
// no client library can hide a failure by retrying on a fresh connection.
//
// Two load shapes:
//
//   - closed loop: Connections workers each send the next request as soon as
//     the previous one is answered;
//   - open loop: requests are due at a fixed Rate; latency is measured from
//     when a request was due, not when it was sent, so a stalled server is
//     charged for the requests it delayed (no coordinated omission).
//
// While loading, Run can execute a reload command a bounded number of times,
// or read reload start/stop marks from a file, and it splits latency
// percentiles into requests that overlapped a reload and those that did not.
//
//	rep, err := load.Run(ctx, load.Config{URL: "http://127.0.0.1:8080/", Duration: 10 * time.Second,
//		Connections: 32, ReloadCommand: "zdctl reload", Reloads: 5, ReloadInterval: time.Second})
package load
