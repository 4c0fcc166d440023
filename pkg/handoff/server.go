package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
)

// Config is what a Server offers and how long it waits.
type Config struct {
	Log    *slog.Logger
	Files  []*os.File // the descriptors on offer, in order
	Offers []Offer    // their descriptions, one per file
	Allow  []int      // groups whose peers are let in besides the same uid and root
	// Timeout bounds every exchange; ReleaseTimeout the wait for a
	// releasing taker's successor to prove itself.
	Timeout        time.Duration
	ReleaseTimeout time.Duration
	Socket         *Socket
}

// EventKind is what happened on a Server.
type EventKind int

const (
	HandedOver EventKind = iota // descriptors went to a taker (without release)
	Released                    // a releasing taker's successor proved itself and has the handoff path
)

// Event is one thing a Server did; PID is the taker's (HandedOver) or the
// successor's (Released).
type Event struct {
	Kind EventKind
	PID  int
}

// Server answers ls and take on its Socket, one goroutine per connection.
// Start begins accepting; StopListening stops (answering what is already
// queued); Close also ends the handlers' long waits and waits for them.
type Server struct {
	cfg       Config
	events    chan Event
	releasing chan struct{} // holds a token while a release is in progress
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	listening bool
}

// NewServer returns a Server for cfg; it does not accept yet.
func NewServer(cfg Config) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, events: make(chan Event, 16), releasing: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// Events delivers what the server did. Handlers wait for it to be read
// (or for Close), so read it.
func (s *Server) Events() <-chan Event { return s.events }

// Start accepts takers in the background until StopListening or Close.
func (s *Server) Start() {
	s.mu.Lock()
	s.listening = true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.acceptLoop()
	}()
}

func (s *Server) spawn(conn *net.UnixConn) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer conn.Close()
		s.Handle(s.ctx, conn)
	}()
}

// StopListening answers whoever connected before (the path may be
// changing hands) and closes the socket, removing its file if it is
// still ours. Handlers still running go on. It may be called more than
// once.
func (s *Server) StopListening() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listening {
		return
	}
	s.listening = false
	s.cfg.Socket.drain(s.spawn)
	s.cfg.Socket.Close(s.cfg.Log)
}

// Close stops listening, ends the handlers' waits for a successor and
// waits for every handler to return.
func (s *Server) Close() {
	s.StopListening()
	s.cancel()
	s.wg.Wait()
}

func (s *Server) acceptLoop() {
	for {
		conn, err := s.cfg.Socket.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// EMFILE and the like: keep serving once it passes.
			s.cfg.Log.Error("accept", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.spawn(conn)
	}
}

// step is a fresh bounded context for one exchange, alive even when ctx
// is cancelled (a server that is stopping still says why).
func (s *Server) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
}

// Handle serves one connection: peer check, then ls or take. ctx ends
// only the long wait for a successor (the server is stopping); every
// exchange has its own bound, Config.Timeout.
func (s *Server) Handle(ctx context.Context, conn *net.UnixConn) {
	lctx := ctx
	ctx, cancel := s.step(ctx)
	defer cancel()
	cred, err := fdpass.PeerCred(conn)
	if err == nil {
		err = fdpass.CheckPeer(cred, s.cfg.Allow)
	}
	if err != nil {
		s.cfg.Log.Warn("refused peer", "pid", cred.PID, "uid", cred.UID, "gid", cred.GID, "err", err)
		s.refuse(ctx, conn, "refused by the handoff server: "+err.Error(),
			"run as the server's user or root, or start serve with --allow-gid for your group")
		return
	}
	log := s.cfg.Log.With("peer", cred.PID)
	var req Request
	if err := fdpass.ReadMsg(ctx, conn, MaxMsg, &req); err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("peer hung up without a request") // a probe
		} else {
			log.Warn("bad request", "err", err)
		}
		return
	}
	if req.V < BaseVersion || req.V > Version {
		log.Warn("peer speaks another protocol version", "version", req.V)
		s.refuse(ctx, conn, fmt.Sprintf("protocol version %d not supported, this server speaks %d to %d", req.V, BaseVersion, Version),
			"use the same zd-handoff version on both sides")
		return
	}
	if req.Op == OpTake && req.Release && req.V < Version {
		log.Warn("release from an older taker refused", "version", req.V)
		s.refuse(ctx, conn, fmt.Sprintf("take --release of protocol version %d is not supported: this server waits for its successor to confirm (version %d)", req.V, Version),
			"run take --release with the same zd-handoff version as the server, or take without --release and stop the old server with TERM")
		return
	}
	switch req.Op {
	case OpLs:
		if err := fdpass.WriteMsg(ctx, conn, Reply{V: req.V, OK: true, PID: os.Getpid(), FDs: s.cfg.Offers}); err != nil {
			log.Warn("ls reply", "err", err)
		}
	case OpTake:
		s.take(ctx, lctx, conn, cred, req)
	default:
		s.refuse(ctx, conn, fmt.Sprintf("unknown request %q", req.Op), "use the same zd-handoff version on both sides")
	}
}

func (s *Server) refuse(ctx context.Context, conn *net.UnixConn, msg, hint string) {
	fdpass.WriteMsg(ctx, conn, Reply{V: Version, PID: os.Getpid(), Error: &ReplyError{Message: msg, Hint: hint}})
}

// selectFDs picks the offered descriptors named names, in that order (all
// of them for no names).
func (s *Server) selectFDs(names []string) ([]fdpass.FD, error) {
	var out []fdpass.FD
	add := func(i int) {
		o := s.cfg.Offers[i]
		out = append(out, fdpass.FD{Name: o.Name, Family: o.Family, Type: o.Type, Local: o.Local, File: s.cfg.Files[i]})
	}
	if len(names) == 0 {
		for i := range s.cfg.Offers {
			add(i)
		}
		return out, nil
	}
	var missing []string
	for _, n := range names {
		found := false
		for i, o := range s.cfg.Offers {
			if o.Name == n {
				add(i)
				found = true
			}
		}
		if !found && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		var offered []string
		for _, o := range s.cfg.Offers {
			offered = append(offered, o.Name)
		}
		return nil, fmt.Errorf("no descriptor named %s on offer (offered: %s)", quoteList(missing), quoteList(offered))
	}
	return out, nil
}

func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "(none)"
	}
	return strings.Join(xs, ", ")
}

// take hands the descriptors over; for a release it then waits, bounded
// by ReleaseTimeout or the end of lctx, for the successor to prove itself.
func (s *Server) take(ctx, lctx context.Context, conn *net.UnixConn, cred fdpass.Cred, req Request) {
	log := s.cfg.Log.With("peer", cred.PID)
	if req.Release {
		select {
		case s.releasing <- struct{}{}:
			defer func() { <-s.releasing }()
		default:
			log.Warn("release refused: another one is in progress")
			s.refuse(ctx, conn, "another take --release is in progress on this server",
				"wait for it to finish (zd-handoff ls shows who serves), then try again")
			return
		}
	}
	fds, err := s.selectFDs(req.Names)
	if err != nil {
		log.Warn("take refused", "err", err)
		s.refuse(ctx, conn, err.Error(), "run zd-handoff ls to see the names on offer")
		return
	}
	if err := fdpass.WriteMsg(ctx, conn, Reply{V: req.V, OK: true, PID: os.Getpid()}); err != nil {
		log.Warn("take reply", "err", err)
		return
	}
	if err := fdpass.Send(ctx, conn, fds); err != nil {
		log.Warn("send fds", "err", err)
		return
	}
	log.Info("handed over", "fds", len(fds), "release", req.Release)
	if !req.Release {
		s.report(ctx, Event{Kind: HandedOver, PID: cred.PID})
		return
	}
	if pid := s.awaitSuccessor(lctx, conn, log); pid != 0 {
		s.report(lctx, Event{Kind: Released, PID: pid})
	}
}

func (s *Server) report(ctx context.Context, ev Event) {
	select {
	case s.events <- ev:
	case <-ctx.Done():
	}
}
