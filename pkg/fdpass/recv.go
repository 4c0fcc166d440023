package fdpass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Recv receives one handoff sent by Send on c: at most limit descriptors,
// each close-on-exec (MSG_CMSG_CLOEXEC) and wrapped in an *os.File named
// after its header name. It returns them in the sender's order, or an
// error — garbage, a truncated header or batch, another protocol version
// (wrapping ErrVersion), more descriptors than announced or than limit,
// the peer closing early, ctx ending — in which case every descriptor
// received so far has been closed.
func Recv(ctx context.Context, c *net.UnixConn, limit int) ([]FD, error) {
	stop, err := bindDeadline(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("receive fds: %w", err)
	}
	defer stop()
	b, err := readFrame(c, maxHeaderLen(limit))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("peer closed the connection before the fd header: %w", err)
		}
		return nil, fmt.Errorf("receive fd header: %w", ctxErr(ctx, err))
	}
	h, err := decodeHeader(b, limit)
	if err != nil {
		return nil, err
	}
	raw, err := recvBatches(c, h.Count)
	if err != nil {
		closeRaw(raw)
		return nil, fmt.Errorf("receive fds: %w", ctxErr(ctx, err))
	}
	out := make([]FD, len(raw))
	for i, fd := range raw {
		m := h.FDs[i]
		out[i] = FD{Name: m.Name, Family: m.Family, Type: m.Type, Local: m.Local, File: os.NewFile(uintptr(fd), m.Name)}
	}
	return out, nil
}

// recvBatches reads batch messages until n descriptors arrived. It returns
// whatever it received even on error, for the caller to close.
func recvBatches(c *net.UnixConn, n int) ([]int, error) {
	got := make([]int, 0, n)
	one := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(MaxPerMsg*4))
	for len(got) < n {
		// One byte at a time: each batch's byte carries its descriptors,
		// and a short read never merges two batches.
		rn, oobn, flags, _, err := c.ReadMsgUnix(one, oob)
		if oobn > 0 {
			fds, perr := parseRights(oob[:oobn])
			got = append(got, fds...)
			if perr != nil && err == nil {
				err = perr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return got, fmt.Errorf("peer closed the connection after %d of %d fds", len(got), n)
		case err != nil:
			return got, fmt.Errorf("after %d of %d fds: %w", len(got), n, err)
		case rn == 0:
			return got, fmt.Errorf("peer closed the connection after %d of %d fds", len(got), n)
		case flags&unix.MSG_CTRUNC != 0:
			return got, fmt.Errorf("control message truncated after %d of %d fds", len(got), n)
		case one[0] != batchMarker:
			return got, fmt.Errorf("unexpected byte %#x where a batch of fds was due", one[0])
		case oobn == 0:
			return got, fmt.Errorf("batch without fds after %d of %d", len(got), n)
		case len(got) > n:
			return got, fmt.Errorf("peer sent %d fds, more than the %d announced", len(got), n)
		}
	}
	return got, nil
}

// parseRights returns every descriptor in the control messages, even when
// a later message is malformed, so that none escapes closing.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	var firstErr error
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			if firstErr == nil {
				firstErr = fmt.Errorf("unexpected control message level %d type %d", msgs[i].Header.Level, msgs[i].Header.Type)
			}
			continue
		}
		r, err := unix.ParseUnixRights(&msgs[i])
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("parse SCM_RIGHTS: %w", err)
		}
		fds = append(fds, r...)
	}
	return fds, firstErr
}

func closeRaw(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// CloseAll closes the files of fds, for a receiver that decides not to
// keep them.
func CloseAll(fds []FD) {
	for _, fd := range fds {
		if fd.File != nil {
			fd.File.Close()
		}
	}
}
