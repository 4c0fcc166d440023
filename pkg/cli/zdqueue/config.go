package zdqueue

import (
	"crypto/tls"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/proxy"
	"github.com/zdtools/zd/pkg/queue"
	"github.com/zdtools/zd/pkg/statedir"
	"golang.org/x/net/http/httpguts"
)

// proxyDefaults returns the engine's defaults, shown in --help.
func proxyDefaults() proxy.Config {
	var c proxy.Config
	c.SetDefaults()
	return c
}

// options is one zd-queue run's configuration, checked.
type options struct {
	cfg          proxy.Config
	listen       []string
	listenH3     string
	admin        string
	stateDir     string
	name         string
	backendsFrom string // state dir whose workers.msgpack to watch; "" for none
	allowGIDs    []int
	logFormat    string
	logLevel     string
	accessLog    string // "", "stderr" or a file path
	accessFormat string
}

func parseOptions(c *cli.Command, io cmdkit.IO) (*options, error) {
	o := &options{
		listen:    c.StringSlice("listen"),
		listenH3:  c.String("listen-h3"),
		admin:     c.String("admin"),
		name:      c.String("name"),
		logFormat: c.String("log-format"),
		logLevel:  c.String("log-level"),
	}
	if c.Args().Len() > 0 {
		return nil, cmdkit.UsageError("zd-queue takes only flags; run 'zd-queue --help'", "unexpected argument %q", c.Args().First())
	}
	if err := statedir.CheckName(o.name); err != nil {
		return nil, cmdkit.UsageError("use letters, digits, '-', '_' or '.'", "--name %q: %v", o.name, err)
	}
	o.stateDir = statedir.Resolve(c.String("state-dir"), o.name, io.Getenv)
	cfg := &o.cfg
	for _, b := range c.StringSlice("backend") {
		for _, a := range cmdkit.SplitList(b) {
			if _, _, _, err := proxy.ParseBackend(a); err != nil {
				return nil, cmdkit.UsageError("use --backend unix:///path/to/worker.sock or --backend tcp://127.0.0.1:9000", "%v", err)
			}
			cfg.Backends = append(cfg.Backends, a)
		}
	}
	o.backendsFrom = c.String("backends-from")
	if o.backendsFrom == "" && len(cfg.Backends) == 0 {
		o.backendsFrom = o.stateDir
	}

	mb := c.Float("buffer-size-mb")
	if mb < 0 {
		return nil, cmdkit.UsageError("use a size in MiB like 10, or 0 for no byte limit", "--buffer-size-mb %v is negative", mb)
	}
	cfg.Limits.MaxBytes = int64(mb * (1 << 20))
	cfg.Limits.MaxCount = int(c.Int("buffer-count"))
	if cfg.Limits.MaxCount < 0 {
		return nil, cmdkit.UsageError("use a count like 1000, or 0 for no count limit", "--buffer-count %d is negative", cfg.Limits.MaxCount)
	}
	age, err := parseSeconds(c.String("buffer-time"))
	if err != nil {
		return nil, cmdkit.UsageError("use seconds (30) or a duration (30s, 2m); REQUEST_BUFFER_TIME is in seconds", "--buffer-time: %v", err)
	}
	cfg.Limits.MaxAge = age
	if ra := c.String("retry-after"); ra != "" {
		d, err := parseSeconds(ra)
		if err != nil {
			return nil, cmdkit.UsageError("use seconds (5) or a duration (5s)", "--retry-after: %v", err)
		}
		cfg.Limits.RetryAfter = d
	}
	ov, err := queue.ParseOverflow(c.String("overflow"))
	if err != nil {
		return nil, cmdkit.UsageError("use --overflow reject|oldest|compress (REQUEST_OVERFLOW_STRATEGY)", "%v", err)
	}
	cfg.Limits.Overflow = ov
	cfg.Limits.ReplayConcurrency = int(c.Int("replay-concurrency"))
	if cfg.Limits.ReplayConcurrency < 1 {
		return nil, cmdkit.UsageError("use a count of at least 1", "--replay-concurrency %d is too small", cfg.Limits.ReplayConcurrency)
	}
	cfg.PriorityHeaders = cmdkit.SplitList(strings.ToLower(c.String("priority-headers")))
	if len(cfg.PriorityHeaders) == 0 {
		return nil, cmdkit.UsageError("name at least one header, e.g. x-priority,x-urgent", "--priority-headers is empty")
	}
	cfg.PinHeader = strings.TrimSpace(c.String("pin-header"))
	if cfg.PinHeader != "" && !httpguts.ValidHeaderFieldName(cfg.PinHeader) {
		return nil, cmdkit.UsageError("name a header such as Zd-Backend, or pass --pin-header '' to turn pinning off", "--pin-header %q is not a valid header name", cfg.PinHeader)
	}
	cfg.NoAutoBuffer = !c.Bool("auto-buffer")
	cfg.RetryIdempotent = c.Bool("retry-idempotent")
	cfg.NoFastPath = !c.Bool("fast-path")

	cfg.ReadHeaderTimeout = c.Duration("header-timeout")
	cfg.IdleTimeout = c.Duration("idle-timeout")
	cfg.BodyTimeout = c.Duration("body-timeout")
	cfg.BackendTimeout = c.Duration("backend-timeout")
	cfg.DialTimeout = c.Duration("dial-timeout")
	cfg.MaxIdlePerBackend = int(c.Int("max-idle-per-backend"))
	if cfg.MaxIdlePerBackend < 1 {
		return nil, cmdkit.UsageError("keep at least 1 (the default is 1024)", "--max-idle-per-backend %d is too small", cfg.MaxIdlePerBackend)
	}
	cfg.MaxHeaderBytes = int(c.Int("max-header-bytes"))
	cfg.ShutdownGrace = c.Duration("grace")
	// 0 turns pings and the write bound off (cmdkit.DurationFlag refuses
	// a negative one); the relay's zero is its default, its negative off.
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	cfg.WSPingInterval = off(c.Duration("ws-ping-interval"))
	cfg.WSPongTimeout = c.Duration("ws-pong-timeout")
	cfg.WSWriteTimeout = off(c.Duration("ws-write-timeout"))
	if cfg.WSPongTimeout <= 0 {
		return nil, cmdkit.UsageError("use a positive duration like 15s", "--ws-pong-timeout %v must be positive", cfg.WSPongTimeout)
	}
	for name, d := range map[string]time.Duration{"header-timeout": cfg.ReadHeaderTimeout, "idle-timeout": cfg.IdleTimeout,
		"body-timeout": cfg.BodyTimeout, "backend-timeout": cfg.BackendTimeout, "dial-timeout": cfg.DialTimeout, "grace": cfg.ShutdownGrace} {
		if d <= 0 {
			return nil, cmdkit.UsageError("use a positive duration like 10s", "--%s %v must be positive", name, d)
		}
	}

	cfg.WSResumeWindow = c.Duration("ws-resume-window")
	switch { // cmdkit.DurationFlag refuses a negative one
	case cfg.WSResumeWindow == 0:
		cfg.NoWSResume = true
	case cfg.WSResumeWindow < time.Second:
		return nil, cmdkit.UsageError("use at least 1s (the first answer tells clients the window in whole seconds), or 0 to turn resumption off", "--ws-resume-window %v is under a second", cfg.WSResumeWindow)
	}
	for _, f := range []struct {
		name string
		to   *int64
	}{{"ws-resume-held-mb", &cfg.WSReplayPerSession}, {"ws-resume-held-total-mb", &cfg.WSReplayTotal}} {
		mb := c.Float(f.name)
		if !(mb*(1<<20) >= 1024) {
			return nil, cmdkit.UsageError("use a size in MiB like 1 (at least 1 KiB: 0.001); --ws-resume-window 0 turns resumption off", "--%s %v is too small", f.name, mb)
		}
		*f.to = int64(mb * (1 << 20))
	}
	if cfg.WSReplayTotal < cfg.WSReplayPerSession {
		return nil, cmdkit.UsageError("raise --ws-resume-held-total-mb to at least --ws-resume-held-mb", "--ws-resume-held-total-mb %v is below --ws-resume-held-mb %v", c.Float("ws-resume-held-total-mb"), c.Float("ws-resume-held-mb"))
	}

	o.accessLog = strings.TrimSpace(c.String("access-log"))
	o.accessFormat = c.String("access-log-format")
	if o.accessFormat != proxy.AccessLogCommon && o.accessFormat != proxy.AccessLogJSON {
		return nil, cmdkit.UsageError("use --access-log-format common or json", "--access-log-format %q is not a format", o.accessFormat)
	}

	cert, key := c.String("tls-cert"), c.String("tls-key")
	if (cert == "") != (key == "") {
		return nil, cmdkit.UsageError("give both --tls-cert and --tls-key", "TLS needs a certificate and a key")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, cmdkit.UsageError("check that both files are PEM and that the key matches the certificate", "load TLS certificate %s: %v", cert, err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if o.listenH3 != "" && cfg.TLS == nil {
		return nil, cmdkit.UsageError("HTTP/3 is always encrypted: add --tls-cert and --tls-key", "--listen-h3 needs a TLS certificate")
	}
	for _, g := range c.StringSlice("allow-gid") {
		gid, err := lookupGID(g)
		if err != nil {
			return nil, cmdkit.UsageError("use a group name or number", "--allow-gid %s: %v", g, err)
		}
		o.allowGIDs = append(o.allowGIDs, gid)
	}
	return o, nil
}

// parseSeconds reads "30" as seconds (the origin's REQUEST_BUFFER_TIME) and
// "30s", "2m" as durations. "0" turns the limit off.
func parseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither seconds nor a duration", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

func lookupGID(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil && n >= 0 {
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(gr.Gid)
}
