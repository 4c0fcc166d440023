package zdrun

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/listenfd"
	"github.com/zdtools/zd/pkg/supervisor"
	"golang.org/x/sys/unix"
)

// options is the parsed command line, before any socket is opened.
type options struct {
	cfg     supervisor.Config
	specs   []listenfd.Spec
	allowG  []int
	logFmt  string
	logLvl  string
	dirFlag string
}

// parseOptions turns flags and environment into a supervisor config. Every
// refusal is a usage error (exit 2) with a hint.
func parseOptions(c *cli.Command, io cmdkit.IO) (*options, error) {
	o := &options{logFmt: c.String("log-format"), logLvl: c.String("log-level"), dirFlag: c.String("state-dir")}
	cfg := &o.cfg
	cfg.Command = c.Args().Slice()
	if len(cfg.Command) == 0 {
		return nil, cmdkit.UsageError("give the app after --, e.g. zd-run --listen tcp://:8080 -- ./app", "no command to run")
	}
	cfg.Name = c.String("name")
	for i, s := range c.StringSlice("listen") {
		sp, err := listenfd.ParseSpec(s)
		if err != nil {
			return nil, cmdkit.UsageError("use [NAME=]tcp://HOST:PORT, udp://HOST:PORT or unix:///path", "--listen %s: %v", s, err)
		}
		if sp.Name == "" {
			sp.Name = "listen" + strconv.Itoa(i)
		}
		o.specs = append(o.specs, sp)
	}
	cfg.Workers = int(c.Int("workers"))
	if cfg.Workers < 1 || cfg.Workers > 1024 {
		return nil, cmdkit.UsageError("use 1..1024", "--workers %d: out of range", cfg.Workers)
	}
	cfg.Strategy = supervisor.NormalizeStrategy(c.String("strategy"))
	if err := supervisor.CheckStrategy(cfg.Strategy); err != nil {
		return nil, cmdkit.UsageError("use --strategy rolling|blue-green|handoff", "--strategy: %v", err)
	}
	cfg.MaxSurge = int(c.Int("max-surge"))
	if cfg.MaxSurge < 1 {
		return nil, cmdkit.UsageError("use --max-surge 1 or more", "--max-surge %d: out of range", cfg.MaxSurge)
	}
	var err error
	if cfg.Ready, err = supervisor.ParseReady(c.String("ready")); err != nil {
		return nil, cmdkit.UsageError("use --ready notify|tcp:ADDR|http:URL|exec:CMD|delay:DUR", "--ready: %v", err)
	}
	// zero: 0 means none (settle, watchdog) or the default (drain-timeout:
	// --grace); the others have no "none" and would silently become their
	// default, so 0 is refused.
	durs := []struct {
		flag string
		dst  *time.Duration
		zero bool
	}{{"ready-timeout", &cfg.ReadyTimeout, false}, {"grace", &cfg.Grace, false}, {"respawn-window", &cfg.RespawnWindow, false},
		{"drain-timeout", &cfg.DrainTimeout, true}, {"settle", &cfg.Settle, true}, {"watchdog", &cfg.Watchdog, true}}
	for _, d := range durs {
		if v := c.String(d.flag); v != "" {
			if *d.dst, err = cmdkit.ParseDuration(v); err != nil {
				return nil, cmdkit.UsageError("use "+cmdkit.DurationSyntax, "--%s %q: %v", d.flag, v, err)
			}
			if *d.dst == 0 && !d.zero {
				return nil, cmdkit.UsageError("use "+cmdkit.DurationSyntax+", more than 0", "--%s %q: must be more than 0", d.flag, v)
			}
		}
	}
	if cfg.StopSignal, err = parseSignal(c.String("stop-signal")); err != nil {
		return nil, cmdkit.UsageError("use a signal name like TERM, INT or QUIT", "--stop-signal: %v", err)
	}
	if v := c.String("max-memory"); v != "" {
		if cfg.MaxMemory, err = parseSize(v); err != nil {
			return nil, cmdkit.UsageError("use a size like 128MB or 1GB (a bare number is MB)", "--max-memory %q: %v", v, err)
		}
	}
	cfg.RespawnLimit = int(c.Int("respawn-limit"))
	if cfg.RespawnLimit < 1 {
		return nil, cmdkit.UsageError("use --respawn-limit 1 or more, or --no-respawn", "--respawn-limit %d: out of range", cfg.RespawnLimit)
	}
	cfg.NoRespawn = c.Bool("no-respawn")
	if v := io.Getenv("AUTO_RESTART_WORKERS"); v != "" && !c.IsSet("no-respawn") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, cmdkit.UsageError("use AUTO_RESTART_WORKERS=true or false", "AUTO_RESTART_WORKERS=%q: not a boolean", v)
		}
		cfg.NoRespawn = !b
	}
	cfg.PreStop = c.String("pre-stop")
	if n := c.Int("max-fds"); n < 0 {
		return nil, cmdkit.UsageError("use a positive number", "--max-fds %d: out of range", n)
	} else {
		cfg.MaxFDs = uint64(n)
	}
	cfg.CPULimit = c.Float("cpu-limit")
	if cfg.CPULimit < 0 || cfg.CPULimit > 100*1024 {
		return nil, cmdkit.UsageError("use a percentage of one CPU, e.g. 80 or 250", "--cpu-limit %v: out of range", cfg.CPULimit)
	}
	cfg.UID, cfg.GID = -1, -1
	if err := lookupCreds(c.String("user"), c.String("group"), cfg); err != nil {
		return nil, err
	}
	if v := c.String("worker-listen"); v != "" {
		sp, err := listenfd.ParseSpec(strings.NewReplacer("{slot}", "0", "{gen}", "0", "${ZD_STATE_DIR}", "/x", "$ZD_STATE_DIR", "/x").Replace(v))
		if err != nil {
			return nil, cmdkit.UsageError("use e.g. unix:///run/zd/app/w{slot}.{gen}.sock or tcp://127.0.0.1:90{slot}{gen}", "--worker-listen %s: %v", v, err)
		}
		if sp.Network != "unix" && sp.Network != "tcp" && sp.Network != "tcp4" && sp.Network != "tcp6" {
			return nil, cmdkit.UsageError("zd-queue dials stream sockets: use unix:// or tcp://", "--worker-listen %s: %s is not a stream socket", v, sp.Network)
		}
		if (cfg.Workers > 1 && !strings.Contains(v, "{slot}")) || !strings.Contains(v, "{gen}") {
			return nil, cmdkit.UsageError("put {slot} and {gen} in the address, e.g. unix://$ZD_STATE_DIR/w{slot}.{gen}.sock",
				"--worker-listen %s: every worker needs its own address, also across reloads", v)
		}
		cfg.WorkerListen = v
	}
	cfg.QueueSocket = c.String("queue-socket")
	for _, g := range c.StringSlice("allow-gid") {
		gid, err := lookupGroup(g)
		if err != nil {
			return nil, cmdkit.UsageError("use a group name or number", "--allow-gid %s: %v", g, err)
		}
		o.allowG = append(o.allowG, gid)
	}
	return o, nil
}

// parseSize parses 128MB, 1GiB, 512k...; a bare number is MB (the origin's
// MAX_WORKER_MEMORY_MB=128 style).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1 << 20)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("not a positive size")
	}
	return int64(f * float64(mult)), nil
}

func parseSignal(s string) (syscall.Signal, error) {
	name := "SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	return sig, nil
}

func lookupCreds(uname, gname string, cfg *supervisor.Config) error {
	if uname != "" {
		u, err := user.Lookup(uname)
		if err != nil {
			if u, err = user.LookupId(uname); err != nil {
				return cmdkit.UsageError("use an existing user name or uid", "--user %s: no such user", uname)
			}
		}
		cfg.UID, _ = strconv.Atoi(u.Uid)
		cfg.GID, _ = strconv.Atoi(u.Gid)
	}
	if gname != "" {
		gid, err := lookupGroup(gname)
		if err != nil {
			return cmdkit.UsageError("use an existing group name or gid", "--group %s: %v", gname, err)
		}
		cfg.GID = gid
	}
	if (cfg.UID >= 0 && cfg.UID != os.Geteuid()) || (cfg.GID >= 0 && cfg.GID != os.Getegid()) {
		if os.Geteuid() != 0 {
			return cmdkit.UsageError("run zd-run as root to switch the workers' user, or drop --user/--group",
				"--user/--group: changing the workers' credentials needs root (zd-run runs as uid %d)", os.Geteuid())
		}
	}
	return nil
}

func lookupGroup(g string) (int, error) {
	if gr, err := user.LookupGroup(g); err == nil {
		return strconv.Atoi(gr.Gid)
	}
	if gr, err := user.LookupGroupId(g); err == nil {
		return strconv.Atoi(gr.Gid)
	}
	return 0, fmt.Errorf("no such group")
}
