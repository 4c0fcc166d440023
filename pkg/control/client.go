package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Call sends op with args (nil for none) to the server at path and decodes
// the result into result (nil to ignore it). Events of a streaming op are
// ignored; use CallStream to see them.
//
// Errors: one wrapping ErrNotRunning when the socket file is missing or the
// connection is refused; a "permission-denied" *Error when the socket file
// does not let us in; the server's *Error, unwrapped, for an error reply; an
// error wrapping ctx.Err() when ctx ends first; other errors wrapped with the
// op and the path.
func Call(ctx context.Context, path, op string, args, result any) error {
	return CallStream(ctx, path, op, args, nil, result)
}

// CallStream is Call for streaming ops: onEvent is called with each event's
// raw msgpack, in order, before the final reply is decoded into result.
// When onEvent returns an error, CallStream hangs up (the server cancels
// the operation's context) and returns that error as is.
func CallStream(ctx context.Context, path, op string, args any, onEvent func(msgpack.RawMessage) error, result any) error {
	req, err := encodeFrame(DefaultMaxFrameSize, requestFrame{V: ProtocolVersion, Op: op, Args: args})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := checkPathLen(path); err != nil {
		return fmt.Errorf("connect %s: %w", path, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return dialError(ctx, path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	_, werr := conn.Write(req)
	// On a write error, still read: a server that refuses us (permission,
	// busy) answers and hangs up without reading the request.
	for {
		var in responseIn
		err := readVersioned(conn, DefaultMaxFrameSize, &in)
		var vm *Error
		if errors.As(err, &vm) {
			return vm
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s on %s: %w", op, path, ctx.Err())
			}
			if werr != nil {
				return fmt.Errorf("%s on %s: %w", op, path, werr)
			}
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("connection closed before the reply: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("%s on %s: %w", op, path, err)
		}
		switch {
		case in.V == nil:
			return fmt.Errorf("%s on %s: reply frame without protocol version", op, path)
		case in.Event != nil:
			if onEvent != nil {
				if err := onEvent(in.Event); err != nil {
					return err
				}
			}
			continue
		case in.OK == nil:
			return fmt.Errorf("%s on %s: reply frame without \"ok\" or \"event\"", op, path)
		case !*in.OK:
			if in.Error == nil {
				return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s failed without saying why", op), Hint: "see the daemon's log"}
			}
			return in.Error
		}
		if result != nil && len(in.Result) > 0 {
			if err := Unmarshal(in.Result, result); err != nil {
				return fmt.Errorf("%s on %s: decode result: %w", op, path, err)
			}
		}
		return nil
	}
}

func dialError(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("connect %s: %w", path, ctx.Err())
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT, syscall.ECONNREFUSED:
			return fmt.Errorf("connect %s: %w (%w)", path, ErrNotRunning, errno)
		case syscall.EACCES, syscall.EPERM:
			return &Error{
				Code:    CodePermissionDenied,
				Message: fmt.Sprintf("connect %s: permission denied", path),
				Hint:    "run as the daemon's user or root, or start the daemon with --allow-gid",
			}
		}
	}
	return fmt.Errorf("connect %s: %w", path, err)
}
