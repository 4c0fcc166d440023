package fdpass

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/zdtools/zd/pkg/msgpackcheck"
	"io"
	"net"
	"os"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// bindDeadline makes ctx's deadline and cancellation the connection's
// deadline until the returned function is called.
func bindDeadline(ctx context.Context, c *net.UnixConn) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(d); err != nil {
			return nil, err
		}
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired // it ran or is running: let it finish before clearing
		}
		c.SetDeadline(time.Time{})
	}, nil
}

// ctxErr prefers the context's reason (deadline, cancel) over the I/O
// error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		// The socket's deadline fired a moment before the context's timer.
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

func writeFrame(c io.Writer, payload []byte) error {
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err := c.Write(buf)
	return err
}

func readFrame(c io.Reader, max int) ([]byte, error) {
	var lb [4]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes, more than the limit of %d", n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("truncated frame: %w", err)
	}
	return b, nil
}

// WriteMsg sends v as one frame (4-byte big-endian length, msgpack),
// bounded by ctx.
func WriteMsg(ctx context.Context, c *net.UnixConn, v any) error {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	stop, err := bindDeadline(ctx, c)
	if err != nil {
		return err
	}
	defer stop()
	if err := writeFrame(c, b); err != nil {
		return fmt.Errorf("send message: %w", ctxErr(ctx, err))
	}
	return nil
}

// ReadMsg receives one frame of at most max bytes into v, bounded by ctx.
// It returns io.EOF when the peer closed the connection before a frame
// began.
func ReadMsg(ctx context.Context, c *net.UnixConn, max int, v any) error {
	stop, err := bindDeadline(ctx, c)
	if err != nil {
		return err
	}
	defer stop()
	b, err := readFrame(c, max)
	if err == io.EOF {
		return err
	}
	if err != nil {
		return fmt.Errorf("receive message: %w", ctxErr(ctx, err))
	}
	if err := msgpackcheck.Check(b, maxDepth); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	return nil
}
