package proxy

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/zdtools/zd/pkg/queue"
)

// Config is how a Proxy behaves. The zero value of each field means its
// documented default (see Defaults).
type Config struct {
	// Backends are static backend addresses (unix:///path, tcp://host:port).
	Backends []string
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
	// AccessLog, when not nil, gets one line per finished client request
	// (see OpenAccessLog). The caller closes it after the proxy.
	AccessLog *AccessLog

	// Limits bound the request buffer (pkg/queue).
	Limits queue.Limits
	// PriorityHeaders name the request headers that give a held request its
	// priority (REQUEST_PRIORITY_HEADERS); nil means queue.DefaultPriorityHeaders().
	PriorityHeaders []string
	// NoAutoBuffer turns off holding requests while no backend is ready:
	// they get 503 at once instead. Operator pauses still hold requests.
	NoAutoBuffer bool
	// PinHeader names the request header that pins a request to one
	// backend (its address, or slot:N); empty turns pinning off. zd-queue
	// sets it to DefaultPinHeader unless --pin-header says otherwise. The
	// header is removed before the request is forwarded.
	PinHeader string

	// RetryIdempotent also retries GET and HEAD requests without a body on
	// another backend when the backend failed before any response byte.
	RetryIdempotent bool
	// MaxRetries bounds the backends one request is tried on beyond the
	// first (default 3).
	MaxRetries int

	// DialTimeout bounds connecting to a backend (default 5s).
	DialTimeout time.Duration
	// BackendTimeout bounds the wait for a backend's response headers
	// (default 60s).
	BackendTimeout time.Duration
	// BackendIdleTimeout closes pooled backend connections idle this long
	// (default 90s).
	BackendIdleTimeout time.Duration
	// MaxIdlePerBackend bounds each backend's idle pool (default 1024).
	// It should exceed the requests in flight per backend: HTTP/2 and
	// HTTP/3 clients multiplex many streams, and every request beyond the
	// pool's size costs a connect and a close.
	MaxIdlePerBackend int

	// ReadHeaderTimeout bounds reading a client's request headers
	// (default 10s): slowloris clients are cut off here.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long
	// (default 120s).
	IdleTimeout time.Duration
	// BodyTimeout bounds reading a request body into the buffer (default
	// 30s); a slow body meanwhile holds no replay slot.
	BodyTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block (default 64 KiB);
	// larger ones get 431.
	MaxHeaderBytes int
	// ShutdownGrace bounds the graceful stop (default 10s).
	ShutdownGrace time.Duration

	// WSPingInterval: a WebSocket client heard from for this long gets a
	// Ping (default 30s; negative: no pings); WSPongTimeout: a session
	// whose client answers nothing within it ends (default 15s).
	// WSWriteTimeout: a session whose client reads nothing of what it is
	// sent for this long ends with 1008 (default 30s; negative: no bound).
	// See pkg/wsrelay's keepalive.go.
	WSPingInterval, WSPongTimeout, WSWriteTimeout time.Duration

	// NoFastPath serves HTTP/1.1 and HTTP/2 (and TLS) with net/http's
	// server alone instead of zd-queue's own (fastserver.go). For
	// comparison and as a way out should the fast path misbehave.
	NoFastPath bool
	// NoFastH2 leaves HTTP/2 (h2c with prior knowledge, h2 over TLS) to
	// net/http's server while HTTP/1.1 keeps the fast path.
	NoFastH2 bool

	// TLS serves HTTPS (h2 and http/1.1 by ALPN) on the TCP listeners when
	// set, and is required for HTTP/3.
	TLS *tls.Config

	// Strategy is reported in status output (the zd-run strategy in use).
	Strategy string

	// quicIdleTimeout is QUIC's idle timeout on HTTP/3 connections (0:
	// quic-go's 30 s); tests shorten it to see keep-alive at work.
	quicIdleTimeout time.Duration

	// WSResumeWindow is how long a resumable WebSocket session (its client
	// asked with a zd-resume token, docs/websocket.md) keeps its backend
	// side and waits for the client to come back after its connection
	// dropped (default 2m). NoWSResume turns resumption off: such clients
	// are refused with 4501.
	WSResumeWindow time.Duration
	NoWSResume     bool
	// WSReplayPerSession bounds the backend-to-client bytes one resumable
	// session keeps for a replay (default 1 MiB); WSReplayTotal the same
	// over all sessions (default 256 MiB).
	WSReplayPerSession int64
	WSReplayTotal      int64
}

// SetDefaults fills every zero field with its documented default.
func (c *Config) SetDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PriorityHeaders == nil {
		c.PriorityHeaders = queue.DefaultPriorityHeaders()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 3
	}
	def(&c.DialTimeout, 5*time.Second)
	def(&c.BackendTimeout, 60*time.Second)
	def(&c.BackendIdleTimeout, 90*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.BodyTimeout, 30*time.Second)
	def(&c.ShutdownGrace, 10*time.Second)
	if c.MaxIdlePerBackend <= 0 {
		c.MaxIdlePerBackend = 1024
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.Strategy == "" {
		c.Strategy = "none"
	}
	def(&c.WSResumeWindow, 2*time.Minute)
	if c.WSReplayPerSession <= 0 {
		c.WSReplayPerSession = 1 << 20
	}
	if c.WSReplayTotal <= 0 {
		c.WSReplayTotal = 256 << 20
	}
}
