package zdhandoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"

	"github.com/zdtools/zd/pkg/fdpass"
)

// handle serves one connection: peer check, then ls or take.
// ctx ends only the long wait for a successor (the server is stopping);
// every exchange has its own bound, --timeout.
func (s *server) handle(ctx context.Context, conn *net.UnixConn) {
	lctx := ctx
	ctx, cancel := s.step(ctx)
	defer cancel()
	cred, err := fdpass.PeerCred(conn)
	if err == nil {
		err = fdpass.CheckPeer(cred, s.allow)
	}
	if err != nil {
		s.log.Warn("refused peer", "pid", cred.PID, "uid", cred.UID, "gid", cred.GID, "err", err)
		s.refuse(ctx, conn, "refused by the handoff server: "+err.Error(),
			"run as the server's user or root, or start serve with --allow-gid for your group")
		return
	}
	log := s.log.With("peer", cred.PID)
	var req request
	if err := fdpass.ReadMsg(ctx, conn, maxMsg, &req); err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("peer hung up without a request") // a probe
		} else {
			log.Warn("bad request", "err", err)
		}
		return
	}
	if req.V < baseVersion || req.V > protoVersion {
		log.Warn("peer speaks another protocol version", "version", req.V)
		s.refuse(ctx, conn, fmt.Sprintf("protocol version %d not supported, this server speaks %d to %d", req.V, baseVersion, protoVersion),
			"use the same zd-handoff version on both sides")
		return
	}
	if req.Op == opTake && req.Release && req.V < protoVersion {
		log.Warn("release from an older taker refused", "version", req.V)
		s.refuse(ctx, conn, fmt.Sprintf("take --release of protocol version %d is not supported: this server waits for its successor to confirm (version %d)", req.V, protoVersion),
			"run take --release with the same zd-handoff version as the server, or take without --release and stop the old server with TERM")
		return
	}
	switch req.Op {
	case opLs:
		if err := fdpass.WriteMsg(ctx, conn, reply{V: req.V, OK: true, PID: os.Getpid(), FDs: s.offers}); err != nil {
			log.Warn("ls reply", "err", err)
		}
	case opTake:
		s.take(ctx, lctx, conn, cred, req)
	default:
		s.refuse(ctx, conn, fmt.Sprintf("unknown request %q", req.Op), "use the same zd-handoff version on both sides")
	}
}

func (s *server) refuse(ctx context.Context, conn *net.UnixConn, msg, hint string) {
	fdpass.WriteMsg(ctx, conn, reply{V: protoVersion, PID: os.Getpid(), Error: &replyError{Message: msg, Hint: hint}})
}

// selectFDs picks the offered descriptors named names, in that order (all
// of them for no names).
func (s *server) selectFDs(names []string) ([]fdpass.FD, error) {
	var out []fdpass.FD
	add := func(i int) {
		o := s.offers[i]
		out = append(out, fdpass.FD{Name: o.Name, Family: o.Family, Type: o.Type, Local: o.Local, File: s.files[i]})
	}
	if len(names) == 0 {
		for i := range s.offers {
			add(i)
		}
		return out, nil
	}
	var missing []string
	for _, n := range names {
		found := false
		for i, o := range s.offers {
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
		for _, o := range s.offers {
			offered = append(offered, o.Name)
		}
		return nil, fmt.Errorf("no descriptor named %s on offer (offered: %s)", quoteList(missing), quoteList(offered))
	}
	return out, nil
}

// take hands the descriptors over; for a release it then waits, bounded
// by --release-timeout or the end of lctx, for the successor to prove itself.
func (s *server) take(ctx, lctx context.Context, conn *net.UnixConn, cred fdpass.Cred, req request) {
	log := s.log.With("peer", cred.PID)
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
	if err := fdpass.WriteMsg(ctx, conn, reply{V: req.V, OK: true, PID: os.Getpid()}); err != nil {
		log.Warn("take reply", "err", err)
		return
	}
	if err := fdpass.Send(ctx, conn, fds); err != nil {
		log.Warn("send fds", "err", err)
		return
	}
	log.Info("handed over", "fds", len(fds), "release", req.Release)
	if !req.Release {
		s.report(ctx, event{kind: handedOver, pid: cred.PID})
		return
	}
	if pid := s.awaitSuccessor(lctx, conn, log); pid != 0 {
		s.report(lctx, event{kind: released, pid: pid})
	}
}

func (s *server) report(ctx context.Context, ev event) {
	select {
	case s.events <- ev:
	case <-ctx.Done():
	}
}
