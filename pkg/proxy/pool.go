package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bconn is one keep-alive connection to a backend. It is used by one
// request at a time, entirely on that request's goroutine: no reader or
// writer goroutines, so a forwarded request costs no goroutine hand-offs.
type bconn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	read   int64 // bytes read from c since the last reset
	idleAt time.Time
	reused bool
	dl     time.Time // the read and write deadline in effect; zero for none

	// Reused by readResponseFast for every response on the connection.
	resp http.Response
	hdr  http.Header
	body lengthBody
}

// bound sets c's read and write deadline to now+d, unless the one in
// effect is already within d/64 of that (it was set less than d/64 ago):
// a deadline change is a timer update, and a busy connection would
// otherwise make two of them per request for nothing.
func (bc *bconn) bound(now time.Time, d time.Duration) {
	want := now.Add(d)
	if !bc.dl.IsZero() && !bc.dl.After(want) && want.Sub(bc.dl) < d/64 {
		return
	}
	bc.dl = want
	bc.c.SetDeadline(want)
}

// unbound clears c's deadline (streams and big bodies take their time).
func (bc *bconn) unbound() {
	bc.dl = time.Time{}
	bc.c.SetDeadline(time.Time{})
}

// Read counts what the response side takes from the connection, so a
// failure can tell "nothing came back" from "the response was cut".
func (bc *bconn) Read(p []byte) (int, error) {
	n, err := bc.c.Read(p)
	bc.read += int64(n)
	return n, err
}

// pool is a backend's idle keep-alive connections, newest first.
type pool struct {
	network, addr string
	dialer        net.Dialer
	maxIdle       int
	idleTimeout   time.Duration

	mu     sync.Mutex
	idle   []*bconn
	closed bool

	suspectUntil atomic.Int64 // unix nanoseconds; see get
}

func newPool(network, addr string, cfg *Config) *pool {
	return &pool{
		network:     network,
		addr:        addr,
		dialer:      net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		maxIdle:     cfg.MaxIdlePerBackend,
		idleTimeout: cfg.BackendIdleTimeout,
	}
}

// get returns a live idle connection, or a new one. A dial failure is a
// *dialError: nothing reached the backend.
//
// An idle connection the backend has closed meanwhile (a worker that
// restarted on its own, a short keep-alive timeout) must not carry a
// request that cannot be sent twice: with mustBeOpen, one idle for over a
// millisecond is checked with a non-blocking peek first. A request that
// can be sent again (idempotent, no body) skips the check, a syscall: if
// the connection turns out closed, forward resends it, and calls suspect
// so that the other idle connections of the pool are checked for a while.
func (p *pool) get(ctx context.Context, mustBeOpen bool, now time.Time) (*bconn, error) {
	check := mustBeOpen || now.UnixNano() < p.suspectUntil.Load()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		idle := now.Sub(bc.idleAt)
		// A connection back in the pool for under a millisecond was just
		// used successfully; backends close idle connections after seconds
		// (and say Connection: close otherwise), so the peek is skipped
		// under load, where it would cost a syscall per request.
		if idle > p.idleTimeout || (check && idle > time.Millisecond && !alive(bc)) {
			bc.c.Close()
			continue
		}
		bc.reused = true
		return bc, nil
	}
	c, err := p.dialer.DialContext(ctx, p.network, p.addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	bc := &bconn{c: c}
	bc.br = bufio.NewReaderSize(bc, 16<<10)
	bc.bw = bufio.NewWriterSize(c, 16<<10)
	return bc, nil
}

// suspect makes get check idle connections for the next second: one was
// found closed by the backend, others may be too.
func (p *pool) suspect() {
	p.suspectUntil.Store(time.Now().Add(time.Second).UnixNano())
}

// put returns bc to the pool, or closes it when the pool is full or closed.
func (p *pool) put(bc *bconn) {
	if bc.br.Buffered() > 0 {
		bc.c.Close() // the backend sent more than the response: not reusable
		return
	}
	bc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		bc.c.Close()
		return
	}
	p.idle = append(p.idle, bc)
	p.mu.Unlock()
}

// closeIdle closes every idle connection; with final, later puts close too.
func (p *pool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}

// alive reports whether an idle connection is still open: the backend has
// not closed it (FIN or RST waiting) and sent nothing unasked. One
// non-blocking peek, so a request is not written onto a connection the
// backend already let go of (the race that loses requests on reload).
func alive(bc *bconn) bool {
	sc, ok := bc.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		_ = n
		ok = errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EWOULDBLOCK)
		return true // never wait for readiness
	})
	return err == nil && ok
}
