package zdctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/statedir"
)

// queueCommand is `zdctl queue ...`: control of zd-queue's request buffer
// over queue.sock. The state directory comes from the root's --state-dir
// and --name flags; output goes to the root's writers (set from the
// program's cmdkit.IO by cmdkit.Run).
func queueCommand() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"}
	backendFlag := &cli.StringFlag{Name: "backend", Aliases: []string{"b"}, Usage: "one backend (unix:///path or tcp://host:port) instead of all traffic"}
	timeoutFlag := &cli.StringFlag{Name: "timeout", Value: "10s", Usage: "give up after this long"}
	return &cli.Command{Name: "queue", Usage: "control zd-queue's request buffer", Commands: []*cli.Command{
		{Name: "status", Usage: "show backends, held requests and counters", Flags: []cli.Flag{jsonFlag, timeoutFlag},
			Action: func(ctx context.Context, c *cli.Command) error {
				io := rootIO(c)
				return queueStatus(ctx, c, io, queueapi.OpStatus, "")
			}},
		{Name: "pause", Usage: "hold new requests (with --backend: route nothing to that backend)", Flags: []cli.Flag{jsonFlag, backendFlag, timeoutFlag},
			Action: func(ctx context.Context, c *cli.Command) error {
				io := rootIO(c)
				return queueStatus(ctx, c, io, queueapi.OpPause, c.String("backend"))
			}},
		{Name: "resume", Usage: "replay held requests and pass traffic through (with --backend: route to it again, ending a drain)", Flags: []cli.Flag{jsonFlag, backendFlag, timeoutFlag},
			Action: func(ctx context.Context, c *cli.Command) error {
				io := rootIO(c)
				return queueStatus(ctx, c, io, queueapi.OpResume, c.String("backend"))
			}},
		{Name: "flush", Usage: "answer every held request with 503 + Retry-After", Flags: []cli.Flag{jsonFlag, timeoutFlag},
			Action: func(ctx context.Context, c *cli.Command) error { io := rootIO(c); return queueFlush(ctx, c, io) }},
		{Name: "drain", Usage: "stop routing to a backend and wait until it has nothing in flight (exit 6 if it still has after --timeout)",
			Flags: []cli.Flag{jsonFlag, &cli.StringFlag{Name: "backend", Aliases: []string{"b"}, Usage: "the backend to drain (required)"},
				&cli.StringFlag{Name: "timeout", Value: "30s", Usage: "longest wait for its requests to finish"}},
			Action: func(ctx context.Context, c *cli.Command) error { io := rootIO(c); return queueDrain(ctx, c, io) }},
		{Name: "self-test", Usage: "hold a synthetic request in the buffer and replay it to a backend", Flags: []cli.Flag{jsonFlag, timeoutFlag},
			Action: func(ctx context.Context, c *cli.Command) error { io := rootIO(c); return queueSelfTest(ctx, c, io) }},
	}}
}

// rootIO is the program's IO as cmdkit.Run wired it into the command tree.
func rootIO(c *cli.Command) cmdkit.IO {
	r := c.Root()
	return cmdkit.IO{Stdin: r.Reader, Stdout: r.Writer, Stderr: r.ErrWriter, Getenv: os.Getenv}
}

// queueSock is zd-queue's control socket for the --state-dir/--name in effect.
func queueSock(c *cli.Command, io cmdkit.IO) string {
	return filepath.Join(statedir.Resolve(c.String("state-dir"), c.String("name"), io.Getenv), statedir.QueueSock)
}

func queueCall(ctx context.Context, c *cli.Command, io cmdkit.IO, op string, args, result any) error {
	if c.Args().Len() > 0 {
		return cmdkit.UsageError("run 'zdctl queue "+op+" --help'", "unexpected argument %q", c.Args().First())
	}
	timeout, err := parseTimeout(c, "timeout", 10*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sock := queueSock(c, io)
	err = control.Call(ctx, sock, op, args, result)
	if errors.Is(err, control.ErrNotRunning) {
		return &cmdkit.Error{Code: cmdkit.ExitNotRunning, Message: "zd-queue is not running (nothing answers on " + sock + ")",
			Hint: "start it, or give the --name or --state-dir it runs with"}
	}
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.CodeNotFound {
		return &cmdkit.Error{Code: cmdkit.ExitUsage, Message: ce.Message, Hint: ce.Hint}
	}
	return callError(err, sock)
}

// queueStatus calls status, pause or resume (for one backend when backend
// is set) and prints the Status zd-queue answers with; --json prints
// everything zd-queue sent, fields this zdctl does not know included.
func queueStatus(ctx context.Context, c *cli.Command, io cmdkit.IO, op, backend string) error {
	var args any
	if backend != "" {
		args = queueapi.BackendArgs{Backend: backend}
	}
	if c.Bool("json") {
		var raw map[string]any
		if err := queueCall(ctx, c, io, op, args, &raw); err != nil {
			return err
		}
		return writeJSON(io.Stdout, jsonable(raw))
	}
	var st queueapi.Status
	if err := queueCall(ctx, c, io, op, args, &st); err != nil {
		return err
	}
	w := io.Stdout
	switch op {
	case queueapi.OpPause:
		if backend != "" {
			fmt.Fprintf(w, "paused backend %s: it gets no new requests\n", backend)
		} else {
			fmt.Fprintln(w, "paused: new requests are held until 'zdctl queue resume'")
		}
	case queueapi.OpResume:
		if backend != "" {
			fmt.Fprintf(w, "resumed backend %s\n", backend)
		} else {
			fmt.Fprintln(w, "resumed: held requests are being replayed")
		}
	}
	state := "passing through"
	switch {
	case st.Paused:
		state = "paused by an operator"
	case st.Holding:
		state = "holding (no ready backend)"
	}
	fmt.Fprintf(w, "zd-queue: %s, %s\n", st.Health, state)
	if st.HealthReason != "" {
		fmt.Fprintf(w, "why: %s\n", st.HealthReason)
	}
	fmt.Fprintf(w, "held: %d requests, %d bytes; replayed %d; in flight %d; connections %d\n",
		st.BufferedRequests, st.BufferedBytes, st.ReplayedRequests, st.RequestsInFlight, st.ActiveConnections)
	fmt.Fprintf(w, "clients: %s\n", clientConns(st.ClientConns))
	if len(st.Buffer.Rejected) > 0 {
		keys := make([]string, 0, len(st.Buffer.Rejected))
		for k := range st.Buffer.Rejected {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, st.Buffer.Rejected[k]))
		}
		fmt.Fprintf(w, "rejected: %s\n", strings.Join(parts, ", "))
	}
	if ws := st.WebSocket; ws.Sessions > 0 || ws.Moved > 0 || ws.MoveFailed > 0 || ws.Resumed > 0 {
		resume := ""
		if ws.Detached > 0 || ws.Resumed > 0 {
			// Resumable sessions (docs/websocket.md): clients away now, and
			// resumes since start.
			resume = fmt.Sprintf("; %d clients away, resumed %d", ws.Detached, ws.Resumed)
		}
		fmt.Fprintf(w, "websocket: %d sessions%s, %d moving, %d bytes held; moved %d, could not move %d%s\n",
			ws.Sessions, byProtocol(ws.Protocols), ws.Moving, ws.HeldBytes, ws.Moved, ws.MoveFailed, resume)
	}
	if len(st.Backends) == 0 {
		fmt.Fprintln(w, "backends: none")
	}
	for _, b := range st.Backends {
		who := ""
		if b.PID != 0 {
			who = fmt.Sprintf(" (slot %d, gen %d, pid %d)", b.Slot, b.Generation, b.PID)
		}
		held := ""
		if b.Held > 0 {
			held = fmt.Sprintf(", held for it %d", b.Held)
		}
		if b.WSSessions > 0 {
			held += fmt.Sprintf(", WebSocket sessions %d%s", b.WSSessions, byProtocol(b.WSProtocols))
		}
		fmt.Fprintf(w, "backend %s%s: %s, in flight %d, served %d, connect failures %d%s\n", b.Addr, who, b.State, b.InFlight, b.Served, b.Failures, held)
	}
	return nil
}

// byProtocol is " (h1 N, h2 N)": WebSocket sessions by client protocol,
// in protocol order, or "" when there are none.
func byProtocol[N int | int64](m map[string]N) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func queueFlush(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	var res queueapi.FlushResult
	if err := queueCall(ctx, c, io, queueapi.OpFlush, nil, &res); err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(io.Stdout, res)
	}
	fmt.Fprintf(io.Stdout, "flushed %d held requests (answered 503 with Retry-After)\n", res.Flushed)
	return nil
}

func queueDrain(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	b := c.String("backend")
	if b == "" {
		return cmdkit.UsageError("name it: zdctl queue drain --backend unix:///path/w1.2.sock", "drain needs --backend")
	}
	timeout, err := parseTimeout(c, "timeout", 30*time.Second)
	if err != nil {
		return err
	}
	var res queueapi.DrainResult
	// The call itself may take the whole timeout: give the socket a little more.
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	sock := queueSock(c, io)
	err = control.Call(ctx, sock, queueapi.OpDrain, queueapi.DrainArgs{Backend: b, TimeoutMS: timeout.Milliseconds()}, &res)
	if errors.Is(err, control.ErrNotRunning) {
		return &cmdkit.Error{Code: cmdkit.ExitNotRunning, Message: "zd-queue is not running (nothing answers on " + sock + ")",
			Hint: "start it, or give the --name or --state-dir it runs with"}
	}
	var ce *control.Error
	if errors.As(err, &ce) && ce.Code == control.CodeNotFound {
		return &cmdkit.Error{Code: cmdkit.ExitUsage, Message: ce.Message, Hint: ce.Hint}
	}
	if err != nil {
		return callError(err, sock)
	}
	if c.Bool("json") {
		return writeJSON(io.Stdout, res)
	}
	fmt.Fprintf(io.Stdout, "drained %s: nothing in flight (waited %dms)\n", res.Backend, res.WaitedMS)
	return nil
}

func queueSelfTest(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	var res queueapi.SelfTestResult
	if err := queueCall(ctx, c, io, queueapi.OpSelfTest, nil, &res); err != nil {
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(io.Stdout, res); err != nil {
			return err
		}
	} else {
		for _, s := range res.Steps {
			fmt.Fprintln(io.Stdout, s)
		}
	}
	if !res.OK {
		return cmdkit.Failf(cmdkit.ExitFailure, "check that a backend is ready: zdctl queue status", "self-test failed: %s", res.Error)
	}
	return nil
}

// jsonable turns what msgpack decoded into something encoding/json takes:
// maps with non-string keys (held_by_priority) get string keys.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	}
	return v
}

// clientConns says how many client connections there are by protocol and
// state: "h1 2 idle, 1 active; h2 1 idle", or "none".
func clientConns(m map[string]map[string]int) string {
	protos := make([]string, 0, len(m))
	for p := range m {
		protos = append(protos, p)
	}
	sort.Strings(protos)
	var out []string
	for _, p := range protos {
		states := make([]string, 0, len(m[p]))
		for s := range m[p] {
			states = append(states, s)
		}
		sort.Strings(states)
		var parts []string
		for _, s := range states {
			parts = append(parts, fmt.Sprintf("%d %s", m[p][s], s))
		}
		out = append(out, p+" "+strings.Join(parts, ", "))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
