package fdpass

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// FD is one descriptor of a handoff and what the sender says about it.
type FD struct {
	Name   string // LISTEN_FDNAMES-style name ("" if none)
	Family string // "inet", "inet6", "unix", or "" for a non-socket
	Type   string // "stream", "dgram", "seqpacket", or ""
	Local  string // local address as the sender saw it
	File   *os.File
}

// batchMarker is the one data byte that carries each batch of descriptors.
const batchMarker = 'F'

// Send hands fds to the peer of c: a header frame describing them, then
// the descriptors themselves in batches of at most MaxPerMsg. It does not
// change the files (nor their blocking mode) and they stay open here. It
// returns nil once everything was written, or an error naming the step
// that failed; ctx bounds the whole send.
func Send(ctx context.Context, c *net.UnixConn, fds []FD) error {
	raw := make([]int, len(fds))
	h := header{Version: Version, Count: len(fds), FDs: make([]meta, len(fds))}
	for i, fd := range fds {
		if fd.File == nil {
			return fmt.Errorf("send fds: fd %d (%s) has no file", i, fd.Name)
		}
		rc, err := fd.File.SyscallConn()
		if err != nil {
			return fmt.Errorf("send fds: fd %d (%s): %w", i, fd.Name, err)
		}
		if err := rc.Control(func(u uintptr) { raw[i] = int(u) }); err != nil {
			return fmt.Errorf("send fds: fd %d (%s): %w", i, fd.Name, err)
		}
		h.FDs[i] = meta{Name: fd.Name, Family: fd.Family, Type: fd.Type, Local: fd.Local}
	}
	defer runtime.KeepAlive(fds)
	b, err := encodeHeader(&h)
	if err != nil {
		return err
	}
	stop, err := bindDeadline(ctx, c)
	if err != nil {
		return fmt.Errorf("send fds: %w", err)
	}
	defer stop()
	if err := writeFrame(c, b); err != nil {
		return fmt.Errorf("send fd header: %w", ctxErr(ctx, err))
	}
	one := []byte{batchMarker}
	for off := 0; off < len(raw); off += MaxPerMsg {
		end := min(off+MaxPerMsg, len(raw))
		if _, _, err := c.WriteMsgUnix(one, unix.UnixRights(raw[off:end]...), nil); err != nil {
			return fmt.Errorf("send fds %d-%d of %d: %w", off, end-1, len(raw), ctxErr(ctx, err))
		}
	}
	return nil
}
