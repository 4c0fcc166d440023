package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
	"golang.org/x/sys/unix"
)

// releaseHint is what to do when a successor never proves itself.
const releaseHint = "the old generation is still serving; check the new one's log. " +
	"--release needs CMD to run zd-handoff serve, whose child must stay up for --settle (or send READY=1 with --notify) " +
	"within the server's --release-timeout"

// awaitSuccessor follows a release once the descriptors went out, on the
// server's side. It returns the pid of the successor that proved itself
// (it answers an ls on the handoff path and said it is ready), or 0 when
// there is none and this server goes on serving; every such outcome is
// logged. ctx ends the wait early (the server is stopping).
func (s *Server) awaitSuccessor(ctx context.Context, conn *net.UnixConn, log *slog.Logger) int {
	sctx, cancel := s.step(ctx)
	var st Status
	err := fdpass.ReadMsg(sctx, conn, MaxMsg, &st)
	cancel()
	if err != nil || st.Op != OpExec {
		log.Warn("taker gave up before exec; still serving", "err", err, "status", st.Op, "error", st.Error)
		return 0
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ReleaseTimeout)
	st = Status{}
	err = fdpass.ReadMsg(wctx, conn, MaxMsg, &st)
	cancel()
	abort := func(msg string) {
		actx, cancel := s.step(ctx)
		defer cancel()
		fdpass.WriteMsg(actx, conn, Status{V: Version, Op: OpAbort, Error: msg})
	}
	hs := s.cfg.Socket
	switch {
	case errors.Is(err, io.EOF):
		log.Error("successor exited before it was ready; still serving", "hint", releaseHint)
		return 0
	case err != nil && ctx.Err() != nil:
		abort("the old server is stopping")
		log.Warn("stopping while a successor starts; handoff aborted")
		return 0
	case err != nil:
		abort(fmt.Sprintf("not ready within the old server's --release-timeout %v", s.cfg.ReleaseTimeout))
		log.Error(fmt.Sprintf("successor not ready within %v; still serving", s.cfg.ReleaseTimeout), "err", err, "hint", releaseHint)
		return 0
	case st.Op == OpFailed:
		log.Warn("taker's exec failed; still serving", "error", st.Error)
		return 0
	case st.Op != OpReady || st.PID <= 0 || st.Path == "":
		abort(fmt.Sprintf("expected a ready status, got %q", st.Op))
		log.Error("successor sent something else than ready; still serving", "status", st.Op)
		return 0
	}
	pid := st.PID
	log = log.With("successor", pid)
	if st.Socket != AbsPath(hs.path) || filepath.Dir(st.Path) != filepath.Dir(st.Socket) {
		abort(fmt.Sprintf("it would serve on %s (answering at %s), not on this server's %s", st.Socket, st.Path, AbsPath(hs.path)))
		log.Error("successor serves another --socket; still serving", "its", st.Socket, "ours", hs.path)
		return 0
	}
	if err := s.hello(ctx, st.Path, pid); err != nil {
		abort("its socket did not answer: " + err.Error())
		log.Error("successor says it is ready but does not answer; still serving", "at", st.Path, "err", err)
		return 0
	}
	sctx, cancel = s.step(ctx)
	defer cancel()
	if err := fdpass.WriteMsg(sctx, conn, Status{V: Version, Op: OpGo}); err != nil {
		log.Error("successor went away when told to take over; still serving", "err", err)
		return 0
	}
	st = Status{}
	err = fdpass.ReadMsg(sctx, conn, MaxMsg, &st)
	if err == nil && st.Op != OpPublished {
		err = fmt.Errorf("expected published, got %q", st.Op)
	}
	// Whatever it said, the path decides: ours still, or answered by it.
	if hs.Ours() {
		log.Error("successor did not take the handoff path; still serving", "err", err, "hint", releaseHint)
		return 0
	}
	if herr := s.hello(ctx, hs.path, pid); herr != nil {
		log.Error("the handoff path is the successor's but it does not answer there", "err", herr, "published", err)
		return 0
	}
	return pid
}

// hello checks that the server answering an ls at path is pid.
func (s *Server) hello(ctx context.Context, path string, pid int) error {
	hctx, cancel := s.step(ctx)
	defer cancel()
	rep, err := Ls(hctx, path)
	if err != nil {
		return err
	}
	if rep.PID != pid {
		return fmt.Errorf("%s is served by pid %d, not %d", path, rep.PID, pid)
	}
	return nil
}

// Predecessor is, in a successor started by a releasing taker, the
// connection to the server it replaces.
type Predecessor struct {
	conn *net.UnixConn
}

// InheritedPredecessor returns the connection named by
// $ZD_HANDOFF_RELEASE_FD, made close-on-exec so that children do not
// inherit it, or nil without one.
func InheritedPredecessor(getenv func(string) string) (*Predecessor, error) {
	v := getenv(EnvReleaseFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	var st unix.Stat_t
	if err == nil && (fd < 0 || unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK) {
		err = errors.New("not an open socket")
	}
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", EnvReleaseFD, v, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "predecessor")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", EnvReleaseFD, v, err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%s=%q: not a unix socket", EnvReleaseFD, v)
	}
	return &Predecessor{conn: uc}, nil
}

// Next waits for the predecessor's one message: OpGo or OpAbort. io.EOF
// means the predecessor is gone (and nobody else serves the path).
func (p *Predecessor) Next(ctx context.Context) (Status, error) {
	var st Status
	err := fdpass.ReadMsg(ctx, p.conn, MaxMsg, &st)
	return st, err
}

// Ready tells the predecessor this process is ready and answers on sock
// (bound, not yet published).
func (p *Predecessor) Ready(sock *Socket, timeout time.Duration) error {
	return p.send(Status{V: Version, Op: OpReady, PID: os.Getpid(), Path: sock.Where(), Socket: AbsPath(sock.path)}, timeout)
}

// Published tells the predecessor its handoff path is this process's now.
func (p *Predecessor) Published(timeout time.Duration) error {
	return p.send(Status{V: Version, Op: OpPublished, PID: os.Getpid()}, timeout)
}

func (p *Predecessor) send(st Status, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fdpass.WriteMsg(ctx, p.conn, st)
}

// Close closes the connection.
func (p *Predecessor) Close() error { return p.conn.Close() }
