package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// The interfaces this package, or net/http's ResponseController, reaches
// by type assertion, checked at compile time for the types meant to have
// them: a method renamed or dropped would otherwise fail the assertion in
// silence (and, for one, turn off streaming, flushing or noticing that a
// client left).

// The fast path's response writers: what http.ResponseController asks
// for (FlushError, SetReadDeadline, SetWriteDeadline), what copyBody's
// flushes and io.WriteString look for, upstreamHeaderWriter (forward) and
// clientWatcher (watchClient, HTTP/1.1 only: an h2 stream's context ends
// with the stream without being asked).
var (
	_ http.ResponseWriter                            = (*h1writer)(nil)
	_ http.Flusher                                   = (*h1writer)(nil)
	_ interface{ FlushError() error }                = (*h1writer)(nil)
	_ interface{ SetReadDeadline(time.Time) error }  = (*h1writer)(nil)
	_ interface{ SetWriteDeadline(time.Time) error } = (*h1writer)(nil)
	_ io.StringWriter                                = (*h1writer)(nil)
	_ upstreamHeaderWriter                           = (*h1writer)(nil)
	_ clientWatcher                                  = (*h1writer)(nil)

	_ http.ResponseWriter                           = (*h2writer)(nil)
	_ http.Flusher                                  = (*h2writer)(nil)
	_ interface{ FlushError() error }               = (*h2writer)(nil)
	_ interface{ SetReadDeadline(time.Time) error } = (*h2writer)(nil)
	_ io.StringWriter                               = (*h2writer)(nil)
	_ upstreamHeaderWriter                          = (*h2writer)(nil)
)

// Connections: lingerClose shuts the write side of a client connection
// (plain, or its TLS layer); alive peeks at a backend connection's socket.
var (
	_ closeWriter  = (*net.TCPConn)(nil)
	_ closeWriter  = (*net.UnixConn)(nil)
	_ closeWriter  = (*tls.Conn)(nil)
	_ syscall.Conn = (*net.TCPConn)(nil)
	_ syscall.Conn = (*net.UnixConn)(nil)
)

// The fast path's own implementations of standard interfaces.
var (
	_ context.Context = (*h2stream)(nil)
	_ io.ReadCloser   = (*h1body)(nil)
	_ io.ReadCloser   = (*h2body)(nil)
	_ net.Listener    = (*connFeed)(nil)
	_ net.Conn        = (*replayConn)(nil)
)

// The access log's response writer passes them on (upstreamRecorder's
// upstreamHeaderWriter is checked where it is declared).
var (
	_ clientWatcher                             = (*statusRecorder)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*statusRecorder)(nil)
	_ io.StringWriter                           = (*statusRecorder)(nil)
)
