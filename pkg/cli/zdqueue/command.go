// Package zdqueue is the command tree of zd-queue, the request-buffering
// reverse proxy.
package zdqueue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/proxy"
)

// Main runs zd-queue with args (args[0] is the program name) and returns the
// exit code.
func Main(ctx context.Context, args []string, io cmdkit.IO) int {
	return cmdkit.Run(ctx, newCommand(io), args, io)
}

func env(names ...string) cli.ValueSourceChain { return cmdkit.EnvVars(names...) }

func newCommand(io cmdkit.IO) *cli.Command {
	d := proxyDefaults()
	return &cli.Command{
		Name:  "zd-queue",
		Usage: "reverse proxy that holds, prioritises and replays requests while workers change",
		Description: "zd-queue passes HTTP/1.1, HTTP/2 and HTTP/3 requests to the least busy ready backend\n" +
			"and holds them in a bounded buffer while none is ready or while paused (zdctl queue pause),\n" +
			"replaying them in priority order. Backends come from --backend or from the worker table\n" +
			"zd-run publishes (--backends-from). See zd-queue(1).",
		Flags: slices.Concat([]cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Usage: "client listener, e.g. :8080, tcp://127.0.0.1:8080 (repeatable; default: inherited LISTEN_FDS)", Sources: env("ZD_QUEUE_LISTEN")},
			&cli.StringFlag{Name: "listen-h3", Usage: "UDP address for HTTP/3, e.g. :8443 (needs --tls-cert and --tls-key)", Sources: env("ZD_QUEUE_LISTEN_H3")},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM certificate: serve HTTPS (h2 and http/1.1 by ALPN) on --listen, and HTTP/3", Sources: env("ZD_TLS_CERT")},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key for --tls-cert", Sources: env("ZD_TLS_KEY")},
			&cli.StringSliceFlag{Name: "backend", Usage: "backend address unix:///path or tcp://host:port (repeatable)", Sources: env("ZD_QUEUE_BACKENDS")},
			&cli.StringFlag{Name: "backends-from", Usage: "state directory whose workers.msgpack (written by zd-run) lists the backends; watched (default: the state directory, when no --backend is given)", Sources: env("ZD_BACKENDS_FROM")},
			&cli.StringFlag{Name: "admin", Usage: "admin HTTP listener for /_zero-downtime/*, /metrics, /healthz: 127.0.0.1:9090 or unix:///path", Sources: env("ZD_QUEUE_ADMIN")},

			&cli.FloatFlag{Name: "buffer-size-mb", Value: 10, Usage: "buffer byte limit in MiB (bodies plus ~1 KiB per request)", Sources: env("ZD_BUFFER_SIZE_MB", "REQUEST_BUFFER_SIZE_MB")},
			&cli.IntFlag{Name: "buffer-count", Value: 1000, Usage: "buffer request-count limit (0: none)", Sources: env("ZD_BUFFER_COUNT", "MAX_REQUESTS_PER_BUFFER")},
			&cli.StringFlag{Name: "buffer-time", Value: "30s", Usage: "longest a request is held before 503 (seconds or a duration like 1m)", Sources: env("ZD_BUFFER_TIME", "REQUEST_BUFFER_TIME")},
			&cli.StringFlag{Name: "overflow", Value: "reject", Usage: "what a full buffer does: reject (new request gets 503), oldest (evict the oldest), compress (zstd bodies, then reject)", Sources: env("ZD_OVERFLOW", "REQUEST_OVERFLOW_STRATEGY")},
			&cli.StringFlag{Name: "priority-headers", Value: "x-priority,x-urgent,x-critical", Usage: "request headers giving priority: the first is numeric (-9..9), later ones are flags", Sources: env("ZD_PRIORITY_HEADERS", "REQUEST_PRIORITY_HEADERS")},
			&cli.StringFlag{Name: "pin-header", Value: proxy.DefaultPinHeader, Usage: "request header pinning a request to one backend (its address, or slot:N); empty: no pinning", Sources: env("ZD_PIN_HEADER")},
			&cli.IntFlag{Name: "replay-concurrency", Value: 64, Usage: "held requests replayed at once on resume", Sources: env("ZD_REPLAY_CONCURRENCY")},
			&cli.StringFlag{Name: "retry-after", Usage: "Retry-After advertised with 503 (default: --buffer-time)", Sources: env("ZD_RETRY_AFTER")},
			&cli.BoolFlag{Name: "auto-buffer", Value: true, Usage: "hold requests while no backend is ready (false: answer 503 at once)", Sources: env("ZD_AUTO_BUFFER", "ENABLE_REQUEST_BUFFERING")},
			&cli.BoolFlag{Name: "fast-path", Value: true, Usage: "serve HTTP/1.1 and HTTP/2 (h2c, and h2 over TLS) with zd-queue's own servers (false: net/http's server, slower; a way out should the fast path misbehave)", Sources: env("ZD_FAST_PATH")},
			&cli.BoolFlag{Name: "retry-idempotent", Usage: "also retry GET/HEAD on another backend when one fails before answering", Sources: env("ZD_RETRY_IDEMPOTENT")},

			&cmdkit.DurationFlag{Name: "header-timeout", Value: d.ReadHeaderTimeout, Usage: "bound on reading a client's request headers", Sources: env("ZD_HEADER_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "idle-timeout", Value: d.IdleTimeout, Usage: "close client keep-alive connections idle this long", Sources: env("ZD_IDLE_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "body-timeout", Value: d.BodyTimeout, Usage: "bound on reading a request body into the buffer", Sources: env("ZD_BODY_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "backend-timeout", Value: d.BackendTimeout, Usage: "bound on a backend's response headers (then 504)", Sources: env("ZD_BACKEND_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "dial-timeout", Value: d.DialTimeout, Usage: "bound on connecting to a backend", Sources: env("ZD_DIAL_TIMEOUT")},
			&cli.IntFlag{Name: "max-idle-per-backend", Value: d.MaxIdlePerBackend, Usage: "idle keep-alive connections kept per backend (size it above the requests in flight per backend)", Sources: env("ZD_MAX_IDLE_PER_BACKEND")},
			&cli.IntFlag{Name: "max-header-bytes", Value: d.MaxHeaderBytes, Usage: "largest request header block (then 431)", Sources: env("ZD_MAX_HEADER_BYTES")},
			&cmdkit.DurationFlag{Name: "ws-ping-interval", Value: 30 * time.Second, Usage: "ping a WebSocket client zd-queue heard nothing from this long (0: never)", Sources: env("ZD_WS_PING_INTERVAL")},
			&cmdkit.DurationFlag{Name: "ws-pong-timeout", Value: 15 * time.Second, Usage: "end a WebSocket session whose client answers no ping within this (counted ping-timeout)", Sources: env("ZD_WS_PONG_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "ws-write-timeout", Value: 30 * time.Second, Usage: "end a WebSocket session whose client reads nothing of what it is sent for this long (1008, counted write-timeout; 0: no bound)", Sources: env("ZD_WS_WRITE_TIMEOUT")},
			&cmdkit.DurationFlag{Name: "grace", Value: d.ShutdownGrace, Usage: "bound on the graceful stop after SIGTERM/SIGINT", Sources: env("ZD_GRACE")},
			&cmdkit.DurationFlag{Name: "ws-resume-window", Value: d.WSResumeWindow, Usage: "how long a resumable WebSocket session waits for its client to reconnect after its connection dropped (0: resumption off; clients asking are refused with 4501)", Sources: env("ZD_WS_RESUME_WINDOW")},
			&cli.FloatFlag{Name: "ws-resume-held-mb", Value: float64(d.WSReplayPerSession) / (1 << 20), Usage: "backend-to-client MiB one resumable session keeps for a replay (then a resume gets 4416 gap)", Sources: env("ZD_WS_RESUME_HELD_MB")},
			&cli.FloatFlag{Name: "ws-resume-held-total-mb", Value: float64(d.WSReplayTotal) / (1 << 20), Usage: "the same over all resumable sessions", Sources: env("ZD_WS_RESUME_HELD_TOTAL_MB")},
			&cli.StringFlag{Name: "access-log", Usage: "write one line per request to stderr or to this file (appended; reopened on SIGUSR1, for logrotate); off by default", Sources: env("ZD_ACCESS_LOG")},
			&cli.StringFlag{Name: "access-log-format", Value: "common", Usage: "access log lines: common (NCSA common log format) or json", Sources: env("ZD_ACCESS_LOG_FORMAT")},
			&cli.BoolFlag{Name: "check", Usage: "validate every flag, the certificate and key, the addresses, the state dir and the worker table's folder, print a one-line summary and exit 0 (2 naming the problem); opens no socket"},
		}, cmdkit.StateFlags("queue.sock"), cmdkit.LogFlags()),
		Action: func(ctx context.Context, c *cli.Command) error {
			o, err := parseOptions(c, io)
			if err != nil {
				return err
			}
			if c.Bool("check") {
				summary, err := check(o, io.Getenv)
				if err != nil {
					return err
				}
				fmt.Fprintln(io.Stdout, summary)
				return nil
			}
			return run(ctx, o, io)
		},
	}
}
