package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/zdtools/zd/pkg/fdpass"
	"golang.org/x/sys/unix"
)

// Dial connects to the handoff socket at path and sends req; it returns
// the connection and the server's (successful) reply. A connection that
// meets a server just handing the path to its successor (refused or
// closed without an answer, while the file at path changed) is tried
// again, a few times. ctx bounds it all. Errors are *Error: KindNotRunning
// when nothing serves on path, KindTimeout when ctx ran out, KindFailure
// otherwise (a refusal carries the server's message and hint).
func Dial(ctx context.Context, path string, req Request) (*net.UnixConn, Reply, error) {
	for attempt := 0; ; attempt++ {
		before := fileID(path)
		conn, rep, retry, err := dialOnce(ctx, path, req)
		if !retry || attempt >= 8 || fileID(path) == before || ctx.Err() != nil {
			return conn, rep, err
		}
	}
}

// fileID identifies the file at path (device and inode), "" if none.
func fileID(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprint(st.Dev, ":", st.Ino)
}

// dialOnce is one attempt of Dial; retry says whether the failure may be
// a server going away mid-handoff.
func dialOnce(ctx context.Context, path string, req Request) (*net.UnixConn, Reply, bool, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, Reply{}, errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT), dialError(err, path)
	}
	conn := nc.(*net.UnixConn)
	var rep Reply
	werr := fdpass.WriteMsg(ctx, conn, req)
	// Read even if the write failed: a server that refuses us answers and
	// hangs up without reading, and its answer is waiting for us.
	err = fdpass.ReadMsg(ctx, conn, MaxMsg, &rep)
	if err != nil && werr != nil {
		err = werr
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) {
			return nil, Reply{}, true, &Error{Message: fmt.Sprintf("handoff server at %s closed the connection without an answer", path),
				Hint: "check the server's log"}
		}
		return nil, Reply{}, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE),
			talkError(fmt.Errorf("talk to handoff server at %s: %w", path, err), "handoff server at "+path)
	}
	if !rep.OK {
		conn.Close()
		e := &Error{Message: "handoff server at " + path + " (pid " + fmt.Sprint(rep.PID) + "): unknown error"}
		if rep.Error != nil {
			e.Message = "handoff server at " + path + " (pid " + fmt.Sprint(rep.PID) + "): " + rep.Error.Message
			e.Hint = rep.Error.Hint
		}
		return nil, Reply{}, false, e
	}
	return conn, rep, false, nil
}

func dialError(err error, path string) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &Error{Kind: KindNotRunning, Err: err}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &Error{Err: err, Hint: "the handoff socket is private (0600): run as its owner or root"}
	}
	return talkError(err, "connect to "+path)
}

// talkError makes a deadline a KindTimeout error about what; other errors
// pass unchanged.
func talkError(err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: KindTimeout, Message: what, Err: err}
	}
	return err
}

// Ls asks the server at path for its pid and what it offers.
func Ls(ctx context.Context, path string) (Reply, error) {
	conn, rep, err := Dial(ctx, path, Request{V: BaseVersion, Op: OpLs})
	if err != nil {
		return Reply{}, err
	}
	conn.Close()
	return rep, nil
}

// Take receives the descriptors on offer at path (the ones named names,
// in that order; all without names). With release, the server stops once
// a successor proves itself: the caller then reports on conn with
// SendStatus (OpExec before it execs, OpFailed if that fails) and passes
// conn on to the successor ($ZD_HANDOFF_RELEASE_FD); without release conn
// may be closed at once. Errors are as Dial's.
func Take(ctx context.Context, path string, names []string, release bool) (*net.UnixConn, Reply, []fdpass.FD, error) {
	// ls and a plain take are the same in every version (servers of the
	// first one answer them); a release needs the confirmation of version 2.
	v := BaseVersion
	if release {
		v = Version
	}
	conn, rep, err := Dial(ctx, path, Request{V: v, Op: OpTake, Names: names, Release: release})
	if err != nil {
		return nil, Reply{}, nil, err
	}
	fds, err := fdpass.Recv(ctx, conn, MaxFDs)
	if err != nil {
		conn.Close()
		err = fmt.Errorf("take fds from %s: %w", path, err)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, Reply{}, nil, &Error{Kind: KindTimeout, Message: "take fds from " + path, Err: err}
		}
		return nil, Reply{}, nil, &Error{Err: err, Hint: "check the server's log; both sides must run the same zd-handoff version"}
	}
	return conn, rep, fds, nil
}

// SendStatus writes one release status on conn.
func SendStatus(ctx context.Context, conn *net.UnixConn, st Status) error {
	return fdpass.WriteMsg(ctx, conn, st)
}
