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
func (s *server) handle(ctx context.Context, conn *net.UnixConn) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
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
	if req.V != protoVersion {
		log.Warn("peer speaks another protocol version", "version", req.V)
		s.refuse(ctx, conn, fmt.Sprintf("protocol version %d not supported, this server speaks %d", req.V, protoVersion),
			"use the same zd-handoff version on both sides")
		return
	}
	switch req.Op {
	case opLs:
		if err := fdpass.WriteMsg(ctx, conn, reply{V: protoVersion, OK: true, PID: os.Getpid(), FDs: s.offers}); err != nil {
			log.Warn("ls reply", "err", err)
		}
	case opTake:
		s.take(ctx, conn, cred, req)
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

func (s *server) take(ctx context.Context, conn *net.UnixConn, cred fdpass.Cred, req request) {
	log := s.log.With("peer", cred.PID)
	fds, err := s.selectFDs(req.Names)
	if err != nil {
		log.Warn("take refused", "err", err)
		s.refuse(ctx, conn, err.Error(), "run zd-handoff ls to see the names on offer")
		return
	}
	if err := fdpass.WriteMsg(ctx, conn, reply{V: protoVersion, OK: true, PID: os.Getpid()}); err != nil {
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
	// The taker says it is about to exec; its connection then closes at
	// the exec (close-on-exec), or it tells us the exec failed.
	var st status
	if err := fdpass.ReadMsg(ctx, conn, maxMsg, &st); err != nil || st.Op != opExec {
		log.Warn("taker gave up before exec; still serving", "err", err, "status", st.Op, "error", st.Error)
		return
	}
	err = fdpass.ReadMsg(ctx, conn, maxMsg, &st)
	switch {
	case errors.Is(err, io.EOF):
		s.report(ctx, event{kind: released, pid: cred.PID})
	case err == nil && st.Op == opFailed:
		log.Warn("taker's exec failed; still serving", "error", st.Error)
	default:
		log.Warn("taker did not exec in time; still serving", "err", err, "status", st.Op)
	}
}

func (s *server) report(ctx context.Context, ev event) {
	select {
	case s.events <- ev:
	case <-ctx.Done():
	}
}
