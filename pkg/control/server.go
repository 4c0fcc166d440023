package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// AllowGIDs lets peers with one of these primary or supplementary
	// groups in, besides root and the server's own uid.
	AllowGIDs []int
	// Logger receives refused peers, bad frames and handler failures.
	// Nil discards them.
	Logger *slog.Logger
	// MaxConns bounds connections served at once (default 64); a
	// connection beyond it gets a "busy" reply.
	MaxConns int
	// ReadTimeout bounds the wait for a connection's request frame
	// (default 10s).
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to a client: a client that stops
	// reading a stream is cut off after it (default 10s).
	WriteTimeout time.Duration
	// MaxFrameSize bounds a frame's body in both directions (default
	// DefaultMaxFrameSize).
	MaxFrameSize int
}

// Handler answers one request. It returns the result to send (any value
// msgpack encodes; nil sends none) or an error: an *Error in err's chain is
// sent as is, anything else becomes a "internal" error (context errors
// become "timeout" or "unavailable"). A streaming op calls s.Send for each
// event before returning. ctx is cancelled when the client goes away or the
// server is closed. A panic is recovered and reported as "internal".
type Handler func(ctx context.Context, req *Request, s Stream) (result any, err error)

// Stream sends events to the client of a streaming op, before the final
// reply.
type Stream interface {
	// Send writes one {v, event} frame. It returns an error once the
	// client is gone, the write times out, or the handler has returned.
	Send(event any) error
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("control server closed")

// Server answers control requests on a unix stream socket.
type Server struct {
	ln    *net.UnixListener
	path  string
	opts  Options
	log   *slog.Logger
	uid   int
	sem   chan struct{}
	close context.Context // done once Close is called
	stop  context.CancelFunc

	unlinkDev, unlinkIno uint64 // the socket file Close removes; 0 = none

	mu      sync.Mutex
	closed  bool
	serving bool
	wg      sync.WaitGroup // Serve calls in progress
}

// FromListener returns a Server for an existing listener, e.g. one inherited
// across a re-exec (see File). The server owns l from now on: Close closes
// it. Whether the socket file is removed then is l's own setting
// (net.UnixListener.SetUnlinkOnClose).
func FromListener(l *net.UnixListener, opts Options) (*Server, error) {
	if l == nil {
		return nil, errors.New("control server: nil listener")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = DefaultMaxFrameSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		ln:    l,
		path:  l.Addr().String(),
		opts:  opts,
		log:   opts.Logger,
		uid:   os.Geteuid(),
		sem:   make(chan struct{}, opts.MaxConns),
		close: ctx,
		stop:  cancel,
	}
	return s, nil
}

// Path returns the socket's address.
func (s *Server) Path() string { return s.path }

// File returns a duplicate of the listening socket's descriptor, to hand to
// a successor process (which calls net.FileListener and FromListener). The
// caller closes it.
func (s *Server) File() (*os.File, error) {
	f, err := s.ln.File()
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	return f, nil
}

// Close stops the server: it closes the listener, cancels every handler's
// context, waits for every Serve call and connection to finish, and removes
// the socket file Listen created (unless another process has replaced it).
// Close is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	err := s.ln.Close()
	s.wg.Wait()
	if s.unlinkIno != 0 {
		var st unix.Stat_t
		if unix.Stat(s.path, &st) == nil && st.Dev == s.unlinkDev && st.Ino == s.unlinkIno {
			os.Remove(s.path)
		}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close control socket %s: %w", s.path, err)
	}
	return nil
}

// Serve accepts connections and answers each one's request with h until ctx
// is done (it returns nil) or Close is called (it returns ErrServerClosed).
// Before returning it cancels the handlers it started and waits for them.
// The listener stays open when ctx ends, so Serve may be called again, or
// the socket handed on with File. Only one Serve may run at a time.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("control server: Serve is already running")
	}
	s.serving = true
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
		s.wg.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	unhook := context.AfterFunc(s.close, cancel)
	defer unhook()
	// A deadline left by an earlier Serve's wake-up must not end this one.
	s.ln.SetDeadline(time.Time{})
	// Wake Accept when ctx ends without closing the listener.
	wake := context.AfterFunc(ctx, func() { s.ln.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !wake() {
			s.ln.SetDeadline(time.Time{})
		}
	}()

	var conns sync.WaitGroup
	defer func() {
		cancel() // whatever ended the loop, handlers stop now
		conns.Wait()
	}()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.close.Err() != nil {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A late wake-up of an earlier Serve: clear it, then
				// look at ctx again (our own wake-up sets it after ctx
				// is done, so it cannot be lost).
				s.ln.SetDeadline(time.Time{})
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
				s.log.Warn("control: accept failed, retrying", "socket", s.path, "err", err)
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			return fmt.Errorf("control server %s: accept: %w", s.path, err)
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.refuse(c, &Error{
				Code:    CodeBusy,
				Message: fmt.Sprintf("too many control connections (%d)", s.opts.MaxConns),
				Hint:    "retry in a moment; a watch holds a connection until it ends",
			})
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() { <-s.sem }()
			s.serveConn(ctx, c, h)
		}()
	}
}

// refuse sends e and closes c. A fresh connection's send buffer is empty,
// so the short deadline is only there for a pathological peer.
func (s *Server) refuse(c *net.UnixConn, e *Error) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	writeFrame(c, DefaultMaxFrameSize, replyFrame{V: ProtocolVersion, Error: e})
	c.Close()
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	cred, err := peerCred(c)
	if err != nil {
		s.log.Warn("control: cannot check peer", "socket", s.path, "err", err)
		c.Close()
		return
	}
	if !allowed(cred, s.uid, s.opts.AllowGIDs) {
		s.log.Warn("control: peer refused", "socket", s.path, "pid", cred.PID, "uid", cred.UID, "gid", cred.GID)
		s.refuse(c, &Error{
			Code:    CodePermissionDenied,
			Message: fmt.Sprintf("uid %d may not use %s", cred.UID, s.path),
			Hint:    fmt.Sprintf("run as uid %d or root, or start the daemon with --allow-gid", s.uid),
		})
		return
	}
	defer c.Close()
	log := s.log.With("socket", s.path, "pid", cred.PID, "uid", cred.UID)

	var in requestIn
	c.SetReadDeadline(time.Now().Add(s.opts.ReadTimeout))
	err = readVersioned(c, s.opts.MaxFrameSize, &in)
	var vm *Error
	switch {
	case errors.As(err, &vm):
		s.reply(c, nil, vm)
		return
	case errors.Is(err, io.EOF):
		return // a probe, or a client that gave up: nothing to answer
	case err != nil:
		log.Warn("control: bad request frame", "err", err)
		s.reply(c, nil, &Error{Code: CodeBadRequest, Message: err.Error(),
			Hint: "the client does not speak the zd control protocol (or is from another release)"})
		return
	case in.V == nil:
		s.reply(c, nil, &Error{Code: CodeBadRequest, Message: "request frame without protocol version \"v\"",
			Hint: "the client does not speak the zd control protocol"})
		return
	case in.Op == "":
		s.reply(c, nil, &Error{Code: CodeBadRequest, Message: "request without op", Hint: "name an operation"})
		return
	}
	c.SetReadDeadline(time.Time{})

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client sends nothing after its request: a read that returns
	// means it went away (EOF with the connection hung up, reset) or broke
	// the protocol (stray bytes). An EOF without hang-up is a client that
	// half-closed after its request and still reads: let it be; if it
	// leaves later, the next write fails.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var b [1]byte
		n, err := c.Read(b[:])
		if n == 0 && errors.Is(err, io.EOF) && !hungUp(c) {
			return
		}
		cancel()
	}()
	defer func() {
		c.SetReadDeadline(time.Unix(1, 0))
		<-watched
	}()

	st := &stream{c: c, max: s.opts.MaxFrameSize, timeout: s.opts.WriteTimeout, ctx: rctx}
	req := &Request{Op: in.Op, Args: in.Args, Peer: cred}
	result, herr := s.call(rctx, h, req, st)
	st.finish()
	if herr != nil && rctx.Err() != nil && ctx.Err() == nil && errors.Is(herr, context.Canceled) {
		log.Debug("control: client went away", "op", req.Op)
		return // nobody to answer
	}
	if herr != nil {
		e := s.toError(ctx, req.Op, herr)
		if e.Code == CodeInternal {
			log.Error("control: request failed", "op", req.Op, "err", herr)
		} else {
			log.Debug("control: request refused", "op", req.Op, "code", e.Code, "err", herr)
		}
		s.reply(c, nil, e)
		return
	}
	var raw msgpack.RawMessage
	if result != nil {
		raw, err = msgpack.Marshal(result)
		if err != nil {
			log.Error("control: cannot encode result", "op", req.Op, "err", err)
			s.reply(c, nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("encode result of %s: %v", req.Op, err), Hint: "this is a bug; see the daemon's log"})
			return
		}
	}
	if err := s.reply(c, raw, nil); errors.Is(err, ErrFrameTooLarge) {
		s.reply(c, nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("result of %s too large: %v", req.Op, err), Hint: "ask for less (filters, limits)"})
	}
}

func (s *Server) call(ctx context.Context, h Handler, req *Request, st Stream) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control: handler panicked", "op", req.Op, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("%s: internal error (panic)", req.Op), Hint: "this is a bug; see the daemon's log"}
		}
	}()
	return h(ctx, req, st)
}

func (s *Server) toError(ctx context.Context, op string, err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeTimeout, Message: fmt.Sprintf("%s: %v", op, err), Hint: "see the daemon's log; raise the timeout if the operation needs longer"}
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("%s: the daemon is shutting down", op), Hint: "retry once it is running again"}
	}
	return &Error{Code: CodeInternal, Message: fmt.Sprintf("%s: %v", op, err), Hint: "see the daemon's log"}
}

// reply writes the final frame. A result is bounded by MaxFrameSize; an
// error always fits, its message and hint cut to maxErrorText bytes.
func (s *Server) reply(c *net.UnixConn, result msgpack.RawMessage, e *Error) error {
	c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	if e != nil {
		e = &Error{Code: e.Code, Message: truncate(e.Message), Hint: truncate(e.Hint)}
		return writeFrame(c, DefaultMaxFrameSize, replyFrame{V: ProtocolVersion, Error: e})
	}
	return writeFrame(c, s.opts.MaxFrameSize, replyFrame{V: ProtocolVersion, OK: true, Result: result})
}

const maxErrorText = 4096

func truncate(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	return strings.ToValidUTF8(s[:maxErrorText], "") + "..."
}

// stream is the Stream of one request.
type stream struct {
	ctx     context.Context
	c       *net.UnixConn
	max     int
	timeout time.Duration

	mu   sync.Mutex
	done bool
}

var _ Stream = (*stream)(nil)

func (st *stream) Send(event any) error {
	raw, err := msgpack.Marshal(event)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return errors.New("send event: the request has been answered")
	}
	if err := st.ctx.Err(); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	st.c.SetWriteDeadline(time.Now().Add(st.timeout))
	if err := writeFrame(st.c, st.max, eventFrame{V: ProtocolVersion, Event: raw}); err != nil {
		return fmt.Errorf("send event: %w", err)
	}
	return nil
}

func (st *stream) finish() {
	st.mu.Lock()
	st.done = true
	st.mu.Unlock()
}
