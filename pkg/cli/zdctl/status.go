package zdctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/statedir"
	"github.com/zdtools/zd/pkg/ui"
)

func getStatus(ctx context.Context, sock string) (runapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st runapi.Status
	err := control.Call(ctx, sock, runapi.OpStatus, nil, &st)
	return st, callError(err, sock)
}

func status(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	sock := runSock(c, io)
	if c.Bool("watch") {
		return watchStatus(ctx, c, io, sock)
	}
	st, err := getStatus(ctx, sock)
	if err != nil {
		return err
	}
	qsock := filepath.Join(filepath.Dir(sock), statedir.QueueSock)
	if c.Bool("json") {
		out := statusOut{Status: lists(st)}
		if _, err := os.Stat(qsock); err == nil {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := control.Call(qctx, qsock, queueapi.OpStatus, nil, &out.Queue); err != nil {
				out.Queue = map[string]any{"error": err.Error()}
			}
			cancel()
		}
		return writeJSON(io.Stdout, out)
	}
	ui.Status(io.Stdout, st, uiOptions(io.Stdout, io))
	if _, err := os.Stat(qsock); err == nil {
		var q queueapi.Status
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := control.Call(qctx, qsock, queueapi.OpStatus, nil, &q)
		cancel()
		if err != nil {
			fmt.Fprintf(io.Stdout, "queue: %v\n", err)
		} else {
			fmt.Fprintf(io.Stdout, "queue: %s, %d backends, %d in flight, %d held (%d bytes), paused %v\n",
				q.Health, len(q.Backends), q.RequestsInFlight, q.BufferedRequests, q.BufferedBytes, q.Paused)
			if ws := wsStatusLine(q); ws != "" {
				fmt.Fprintln(io.Stdout, ws)
			}
		}
	}
	return nil
}

// wsStatusLine is zdctl status's line on zd-queue's WebSocket sessions
// (none without sessions): how many, by client protocol, moving, and by
// worker slot (with its generation when two of a slot have sessions; other
// backends by address), cut to 80 columns.
func wsStatusLine(q queueapi.Status) string {
	ws := q.WebSocket
	if ws.Sessions == 0 && ws.Moving == 0 {
		return ""
	}
	line := fmt.Sprintf("websocket: %d sessions%s, %d moving", ws.Sessions, byProtocol(ws.Protocols), ws.Moving)
	slots := map[int]int{}
	for _, b := range q.Backends {
		if b.WSSessions > 0 && b.PID != 0 {
			slots[b.Slot]++
		}
	}
	var per []string
	for _, b := range q.Backends {
		if b.WSSessions == 0 {
			continue
		}
		who := b.Addr
		switch {
		case b.PID != 0 && slots[b.Slot] > 1: // two generations of a slot
			who = fmt.Sprintf("slot %d gen %d", b.Slot, b.Generation)
		case b.PID != 0:
			who = fmt.Sprintf("slot %d", b.Slot)
		}
		per = append(per, fmt.Sprintf("%s: %d", who, b.WSSessions))
	}
	if len(per) > 0 {
		line += "; " + strings.Join(per, ", ")
	}
	if len(line) > 80 {
		line = line[:79] + "…"
	}
	return line
}

// statusOut is `zdctl status --json`: zd-run's status, plus zd-queue's
// under "queue" when zd-queue runs in the same state dir.
type statusOut struct {
	runapi.Status
	Queue map[string]any `json:"queue"` // null without zd-queue
}

// watchStatus shows the status again on every event from zd-run's watch
// stream and at least every --interval, until ctx ends (^C) or zd-run goes
// away (exit 4). With --json it writes one JSON object per line.
func watchStatus(ctx context.Context, c *cli.Command, io cmdkit.IO, sock string) error {
	every, err := parseTimeout(c, "interval", time.Second)
	if err != nil {
		return err
	}
	opt := uiOptions(io.Stdout, io)
	changed := make(chan struct{}, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = control.CallStream(wctx, sock, runapi.OpWatch, nil, func(msgpack.RawMessage) error {
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		}, nil)
	}()
	defer func() { cancel(); <-done }()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		st, err := getStatus(ctx, sock)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case c.Bool("json"):
			b, _ := json.Marshal(lists(st))
			fmt.Fprintln(io.Stdout, string(b))
		case opt.Terminal:
			fmt.Fprint(io.Stdout, "\x1b[H\x1b[2J")
			ui.Status(io.Stdout, st, opt)
		default:
			ui.Status(io.Stdout, st, opt)
			fmt.Fprintln(io.Stdout)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

// lists gives the status's lists as [] when empty, as documented (msgpack
// may bring an empty list back as nil, which JSON would print as null).
func lists(st runapi.Status) runapi.Status {
	if st.Workers == nil {
		st.Workers = []runapi.Worker{}
	}
	if st.Listeners == nil {
		st.Listeners = []string{}
	}
	return st
}

// healthOut is `zdctl health --json`: the health fields of the status,
// under the same names as in `zdctl status --json`.
type healthOut struct {
	Name             string             `json:"name"`
	Health           string             `json:"health"`
	HealthReason     runapi.Text        `json:"health_reason"`
	ReloadInProgress bool               `json:"reload_in_progress"`
	Generation       int                `json:"generation"`
	UptimeSeconds    float64            `json:"uptime_seconds"`
	MemoryUsageMB    float64            `json:"memory_usage_mb"`
	WorkerStats      runapi.WorkerStats `json:"worker_stats"`
}

// HealthNotRunning is the health `zdctl health --json` reports when nothing
// answers on run.sock (exit 4).
const HealthNotRunning = "not_running"

func health(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	sock := runSock(c, io)
	wait, err := parseTimeout(c, "wait", 0)
	if err != nil {
		return err
	}
	st, err := getStatus(ctx, sock)
	if wait > 0 {
		st, err = waitHealthy(ctx, sock, wait, int(c.Int("generation")))
	}
	if err != nil {
		var ce *cmdkit.Error
		if c.Bool("json") && errors.As(err, &ce) && ce.Code == cmdkit.ExitNotRunning {
			// Scripts and probes read the JSON whatever happened.
			if werr := writeJSON(io.Stdout, healthOut{Name: c.String("name"), Health: HealthNotRunning,
				HealthReason: runapi.Text(ce.Message)}); werr != nil {
				return werr
			}
		}
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(io.Stdout, healthOut{Name: st.Name, Health: st.Health, HealthReason: st.HealthReason,
			ReloadInProgress: st.ReloadInProgress, Generation: st.Generation, UptimeSeconds: st.UptimeSeconds,
			MemoryUsageMB: st.MemoryUsageMB, WorkerStats: st.WorkerStats}); err != nil {
			return err
		}
	} else {
		line := st.Health
		if st.HealthReason != "" {
			line += ": " + string(st.HealthReason)
		}
		fmt.Fprintln(io.Stdout, line)
	}
	switch st.Health {
	case runapi.HealthHealthy, runapi.HealthReloading:
		return nil
	}
	return &cmdkit.Error{Code: cmdkit.ExitUnhealthy, Message: "service " + st.Name + " is " + st.Health + explain(string(st.HealthReason)),
		Hint: "zdctl status shows the workers; zd-run's log says why they fail"}
}

func explain(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// waitHealthy polls until the service is healthy with no reload in progress
// and serves generation gen or later, or the bound passes (then the last
// status, or the last error, is returned). Not running counts as not yet.
func waitHealthy(ctx context.Context, sock string, bound time.Duration, gen int) (runapi.Status, error) {
	deadline := time.Now().Add(bound)
	for {
		st, err := getStatus(ctx, sock)
		if err == nil && st.Health == runapi.HealthHealthy && !st.ReloadInProgress && st.Generation >= gen {
			return st, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil && st.Generation < gen {
				err = &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: fmt.Sprintf("generation %d not serving after %v (generation %d is)", gen, bound, st.Generation),
					Hint: "zdctl status shows the reload's state"}
			}
			return st, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
