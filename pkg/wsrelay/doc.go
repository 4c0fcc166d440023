// Package wsrelay relays WebSocket sessions between clients and backends
// so that a session outlives any one backend: zd-queue terminates the
// WebSocket on both sides and moves a session from backend to backend at
// message boundaries while the client sees one uninterrupted connection.
//
// The client side is a plain byte stream (an HTTP/1.1 connection after its
// 101, an HTTP/2 or HTTP/3 stream after its 200), so every transport feeds
// the same code. Its WebSocket (RFC 6455, server role; permessage-deflate
// of RFC 7692, zd-queue's own, without context takeover) lives in the
// relay. Each backend attempt is the relay's own RFC 6455 client over a
// connection Config.Dial makes, carrying the client's request (target,
// Host, Origin, Cookie, Authorization, the subprotocol offer, every other
// end-to-end field) plus Zd-Session-Id (random, made here: a client cannot
// choose it) and, on a re-attach, Zd-Resume: N (how many times the session
// moved). The first backend's subprotocol choice and the end-to-end
// fields of its 101 (Set-Cookie, ...) go into the client's answer.
//
// Usage sketch (HTTP/1.1):
//
//	r := wsrelay.New(wsrelay.Config{Dial: pickReadyBackend})
//	http.Handle("/ws", r)                  // checks, attaches, 101, relays
//	...
//	r.Drain(ctx, "w1.3")                   // before the backend is stopped
//	st := r.Stats()                        // for /metrics
//	r.Close(ctx)                           // 1012 to every client
//
// For h2/h3: Open with the request's fields, answer 200 with the
// Response's fields, then Session.Run on the stream.
//
// # Moving a session
//
// Drain (or a backend's own Close 1001/1012, or its connection dropping)
// starts the barrier: client→backend messages are held (bounded); Close
// 1012 goes to the old backend; whatever it still sends is forwarded until
// its Close reply, which proves it read every message sent before; a ready
// backend is dialled (at most MaxDials at once, each after a random wait up
// to DialJitter; waiting in that queue while others re-attach does not
// count against ReattachTimeout) with the resume fields; the held messages
// are written; the session carries on. Drain moves 8 sessions a core at a time (at most
// 2×MaxDials), without the jitter, so a session's messages are held for its
// own move only, not while thousands of others wait for a dial. Any other
// Close code of a backend goes to the client as it is. Pings are answered
// per hop: the relay answers the client's and the backend's pings itself.
//
// A client's Close while its session moves waits for the move: what the
// client sent before it goes to the new backend, then its Close, and the
// client gets the backend's last messages and then its Close answered
// with its own code, as on an attached session. If no backend takes the
// session, the answer is 1012: its held messages went nowhere.
//
// # Bounds and the codes clients get
//
//	1009 Message Too Big   a message over MaxMessage (either direction)
//	1013 Try Again Later   held bytes over MaxHeldPerSession or MaxHeldTotal
//	1012 Service Restart   no backend within ReattachTimeout, a re-attach
//	                       refused with a 4xx, or the relay closing
//	1014 Bad Gateway       the backend broke RFC 6455
//	1002, 1007             the client broke RFC 6455 / sent invalid UTF-8
//	1008 Policy Violation  the client read nothing for WriteTimeout (counted;
//	                       the connection is closed, as no Close can reach it)
//	(1006, no Close)       the client answered no ping within PongTimeout
//	503                    Open past MaxSessions (before any upgrade)
//
// The relay never sends 1001 to a client. Every close is counted in
// Stats.Closes by code and reason.
//
// # What holds when a backend is killed (kill -9) mid-message
//
// Without a Close handshake no one can know what the dead process read:
//
//   - Client→backend: a message counts as delivered once the kernel took
//     all of its frame for the backend's socket. What the process had not
//     read from its socket buffer when it died is lost, and zd-queue cannot
//     know which messages those were. A frame the kernel took only in part
//     (the write failed in its middle) cannot have been read as a message:
//     it is sent again, whole, to the next backend, as is every message
//     held or read from the client after the drop. So nothing is
//     duplicated and order is kept; loss is limited to what the dead
//     process had accepted into its socket buffer and not processed.
//   - Backend→client: the client only ever gets whole messages. A message
//     the backend was in the middle of sending (part of its frames read)
//     is dropped and counted in Stats.LostInFlight; every whole message
//     the backend sent before it died is delivered, once, in order.
//   - The session itself stays open: it is re-attached like a drain (the
//     new backend sees Zd-Resume: N and the same Zd-Session-Id), so an app
//     that keeps per-session state in a store of its own can reconcile.
//
// A drain (Drain before the backend is stopped) has none of this
// uncertainty: the old backend's Close reply comes after it read every
// message sent to it, so nothing is lost, duplicated or reordered.
//
// # Memory
//
// An idle session holds no big buffer: each direction reads into a
// 512-byte array inside the session and borrows a 16 KiB buffer from a
// pool only while a read fills that; message and output buffers are pooled
// too, and no compressor state is kept between messages.
package wsrelay
