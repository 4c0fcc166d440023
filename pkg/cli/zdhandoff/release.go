package zdhandoff

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
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
	"golang.org/x/sys/unix"
)

// envReleaseFD names the descriptor, in the command a take --release
// execs, of the connection to the releasing server (see protocol.go).
const envReleaseFD = "ZD_HANDOFF_RELEASE_FD"

// releaseHint is what to do when a successor never proves itself.
const releaseHint = "the old generation is still serving; check the new one's log. " +
	"--release needs CMD to run zd-handoff serve, whose child must stay up for --settle (or send READY=1 with --notify) " +
	"within the server's --release-timeout"

// step is a fresh bounded context for one exchange, alive even when ctx
// is cancelled (a server that is stopping still says why).
func (s *server) step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
}

// awaitSuccessor follows a release once the descriptors went out, on the
// server's side. It returns the pid of the successor that proved itself
// (its serve answers an ls on the handoff path and has its child ready),
// or 0 when there is none and this server goes on serving; every such
// outcome is logged. ctx ends the wait early (the server is stopping).
func (s *server) awaitSuccessor(ctx context.Context, conn *net.UnixConn, log *slog.Logger) int {
	sctx, cancel := s.step(ctx)
	var st status
	err := fdpass.ReadMsg(sctx, conn, maxMsg, &st)
	cancel()
	if err != nil || st.Op != opExec {
		log.Warn("taker gave up before exec; still serving", "err", err, "status", st.Op, "error", st.Error)
		return 0
	}
	wctx, cancel := context.WithTimeout(ctx, s.releaseTimeout)
	st = status{}
	err = fdpass.ReadMsg(wctx, conn, maxMsg, &st)
	cancel()
	abort := func(msg string) {
		actx, cancel := s.step(ctx)
		defer cancel()
		fdpass.WriteMsg(actx, conn, status{V: protoVersion, Op: opAbort, Error: msg})
	}
	switch {
	case errors.Is(err, io.EOF):
		log.Error("successor exited before it was ready; still serving", "hint", releaseHint)
		return 0
	case err != nil && ctx.Err() != nil:
		abort("the old server is stopping")
		log.Warn("stopping while a successor starts; handoff aborted")
		return 0
	case err != nil:
		abort(fmt.Sprintf("not ready within the old server's --release-timeout %v", s.releaseTimeout))
		log.Error(fmt.Sprintf("successor not ready within %v; still serving", s.releaseTimeout), "err", err, "hint", releaseHint)
		return 0
	case st.Op == opFailed:
		log.Warn("taker's exec failed; still serving", "error", st.Error)
		return 0
	case st.Op != opReady || st.PID <= 0 || st.Path == "":
		abort(fmt.Sprintf("expected a ready status, got %q", st.Op))
		log.Error("successor sent something else than ready; still serving", "status", st.Op)
		return 0
	}
	pid := st.PID
	log = log.With("successor", pid)
	if st.Socket != absPath(s.hs.path) || filepath.Dir(st.Path) != filepath.Dir(st.Socket) {
		abort(fmt.Sprintf("it would serve on %s (answering at %s), not on this server's %s", st.Socket, st.Path, absPath(s.hs.path)))
		log.Error("successor serves another --socket; still serving", "its", st.Socket, "ours", s.hs.path)
		return 0
	}
	if err := s.hello(ctx, st.Path, pid); err != nil {
		abort("its socket did not answer: " + err.Error())
		log.Error("successor says it is ready but does not answer; still serving", "at", st.Path, "err", err)
		return 0
	}
	sctx, cancel = s.step(ctx)
	defer cancel()
	if err := fdpass.WriteMsg(sctx, conn, status{V: protoVersion, Op: opGo}); err != nil {
		log.Error("successor went away when told to take over; still serving", "err", err)
		return 0
	}
	st = status{}
	err = fdpass.ReadMsg(sctx, conn, maxMsg, &st)
	if err == nil && st.Op != opPublished {
		err = fmt.Errorf("expected published, got %q", st.Op)
	}
	// Whatever it said, the path decides: ours still, or answered by it.
	if s.hs.ours() {
		log.Error("successor did not take the handoff path; still serving", "err", err, "hint", releaseHint)
		return 0
	}
	if herr := s.hello(ctx, s.hs.path, pid); herr != nil {
		log.Error("the handoff path is the successor's but it does not answer there", "err", herr, "published", err)
		return 0
	}
	return pid
}

// hello checks that the server answering an ls at path is pid.
func (s *server) hello(ctx context.Context, path string, pid int) error {
	hctx, cancel := s.step(ctx)
	defer cancel()
	conn, rep, err := dial(hctx, path, request{V: baseVersion, Op: opLs}, s.timeout)
	if err != nil {
		return err
	}
	conn.Close()
	if rep.PID != pid {
		return fmt.Errorf("%s is served by pid %d, not %d", path, rep.PID, pid)
	}
	return nil
}

// predecessor is, in a serve started by take --release, the connection
// to the server it replaces.
type predecessor struct {
	conn *net.UnixConn
	msgs chan predMsg
}

// predMsg is the one message a predecessor sends (go or abort), or the
// error that ended the wait for it (io.EOF: the predecessor is gone).
type predMsg struct {
	st  status
	err error
}

// inheritedPredecessor returns the connection named by $ZD_HANDOFF_RELEASE_FD,
// made close-on-exec so the child does not inherit it, or nil without one.
func inheritedPredecessor(getenv func(string) string) (*predecessor, error) {
	v := getenv(envReleaseFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	var st unix.Stat_t
	if err == nil && (fd < 0 || unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK) {
		err = errors.New("not an open socket")
	}
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", envReleaseFD, v, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "predecessor")
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", envReleaseFD, v, err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%s=%q: not a unix socket", envReleaseFD, v)
	}
	return &predecessor{conn: uc, msgs: make(chan predMsg, 1)}, nil
}

// listen reads the predecessor's one message in the background.
func (p *predecessor) listen(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		var st status
		err := fdpass.ReadMsg(ctx, p.conn, maxMsg, &st)
		p.msgs <- predMsg{st: st, err: err}
	}()
}

func (p *predecessor) send(st status, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return fdpass.WriteMsg(ctx, p.conn, st)
}
