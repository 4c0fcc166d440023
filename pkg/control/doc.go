// Package control is the zd control protocol: one unix stream connection
// per request, spoken between zdctl and the daemons (zd-run's run.sock,
// zd-queue's queue.sock).
//
// Every frame is a 4-byte big-endian length followed by a msgpack map, and
// every frame carries the protocol version under "v":
//
//	request  {v, op, args}
//	event    {v, event}                    zero or more, for streaming ops
//	reply    {v, ok: true, result}         exactly one, last
//	         {v, ok: false, error: {code, message, hint}}
//
// A server:
//
//	srv, err := control.Listen(filepath.Join(dir, statedir.RunSock), control.Options{Logger: log})
//	...
//	go srv.Serve(ctx, func(ctx context.Context, req *control.Request, s control.Stream) (any, error) {
//		switch req.Op {
//		case "status":
//			return status(), nil
//		case "reload":
//			var a ReloadArgs
//			if err := req.Decode(&a); err != nil {
//				return nil, err
//			}
//			return reload(ctx, a, func(ev Progress) { s.Send(ev) })
//		}
//		return nil, control.UnknownOp(req.Op)
//	})
//	defer srv.Close()
//
// A client:
//
//	var st Status
//	err := control.Call(ctx, sock, "status", nil, &st)
//	if errors.Is(err, control.ErrNotRunning) { ... }
//
// The server checks each peer with SO_PEERCRED: root, its own uid, or a
// member of Options.AllowGIDs; anyone else gets a "permission-denied" reply.
//
// Rules for clients in other languages: send one request frame, then only
// read (shutting down the writing side is allowed; sending more bytes, or
// closing, cancels the operation). Frames are at most 4 MiB by default and
// nest at most MaxDepth deep; a bad frame gets a "bad-request" reply and the
// connection is closed. A frame whose "v" differs gets "version-mismatch".
// Unknown keys are ignored, so later versions may add some.
package control

// ProtocolVersion is the version carried in every frame. A peer speaking
// another version gets a "version-mismatch" error.
const ProtocolVersion = 1

// DefaultMaxFrameSize bounds one frame's msgpack body unless Options says
// otherwise.
const DefaultMaxFrameSize = 4 << 20
