package zdctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/snapshot"
	"github.com/zdtools/zd/pkg/statedir"
)

func snapshotCommand(io cmdkit.IO) *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "write a .zds snapshot of what zd-run and zd-queue hold now: listeners, workers, client connections, WebSocket sessions, held requests",
		Description: "Asks zd-run on run.sock for its state (the status call: it changes nothing) and writes\n" +
			"one listener record per listening socket and one worker record per worker (pid, slot,\n" +
			"generation, state, backend, release). When zd-queue runs in the same state directory it\n" +
			"is asked too, on queue.sock (the snapshot call: it copies its state without pausing\n" +
			"traffic): one tcp-conn record per client connection, one ws-session record per WebSocket\n" +
			"session (handshake, subprotocol, extensions, backend, message and byte counters, held\n" +
			"frames) and one http-request record per held request (head and body). Either daemon may\n" +
			"run alone. The file goes to STATE_DIR/snapshots/ by default, named zd-run-GEN-TIME.zds,\n" +
			"zd-queue-GEN-TIME.zds or zd-GEN-TIME.zds after who answered. Cookie, Authorization and\n" +
			"Proxy-Authorization values are kept only in an encrypted file. Read it with zd-snapshot inspect.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the snapshot to `FILE` (default STATE_DIR/snapshots/WHO-GEN-TIME.zds)"},
			&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, Usage: "only records matching `TERMS` (zd-snapshot's syntax: kind=ws-session,state=active,worker=PID,backend=ADDR)"},
			&cli.StringFlag{Name: "key-file", Aliases: []string{"k"}, Usage: "encrypt with the key in `FILE`; else $ZD_SNAPSHOT_KEY or $CONNECTION_STATE_KEY; else plain",
				Sources: cmdkit.EnvVars("ZD_SNAPSHOT_KEY_FILE")},
			&cli.BoolFlag{Name: "json", Usage: "print what was written as JSON on stdout: the file, record counts, and zd-queue's timings"},
			&cli.StringFlag{Name: "timeout", Value: "60s", Usage: "give up (exit 6, no file written) when the daemons have not sent everything after `DURATION`"},
		},
		Action: func(ctx context.Context, c *cli.Command) error { return writeSnapshot(ctx, c, io) },
	}
}

// queueKinds are the record kinds zd-queue writes; runKinds zd-run's.
var (
	queueKinds = []snapshot.Kind{snapshot.KindTCPConn, snapshot.KindWSSession, snapshot.KindHTTPRequest}
	runKinds   = []snapshot.Kind{snapshot.KindListener, snapshot.KindWorker}
)

// wants reports whether f lets any record of kinds through.
func wants(f snapshot.Filter, kinds []snapshot.Kind) bool {
	if len(f.Kinds) == 0 {
		return true
	}
	for _, k := range kinds {
		if slices.Contains(f.Kinds, k) {
			return true
		}
	}
	return false
}

func writeSnapshot(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	root := c.Root()
	filter, err := snapshot.ParseFilter(c.String("filter"))
	if err != nil {
		return cmdkit.UsageError("e.g. --filter kind=ws-session,state=active", "%v", err)
	}
	timeout, err := parseTimeout(c, "timeout", 60*time.Second)
	if err != nil {
		return err
	}
	var key []byte
	if path := c.String("key-file"); path != "" {
		if key, err = snapshot.ReadKeyFile(path); err != nil {
			return cmdkit.Wrap(err, cmdkit.ExitUsage, "zd-snapshot keygen -o FILE makes a key; a key file must be mode 0600")
		}
	} else if key, _, err = snapshot.KeyFromEnv(io.Getenv); err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "set it to 64 hex digits (zd-snapshot keygen prints one)")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sock := runSock(root, io)
	qsock := filepath.Join(filepath.Dir(sock), statedir.QueueSock)
	_, qerr := os.Stat(qsock)
	askQueue := qerr == nil && wants(filter, queueKinds)

	var recs []*snapshot.Record
	st, err := getStatus(ctx, sock)
	haveRun := err == nil
	if err != nil {
		var ce *cmdkit.Error
		if !askQueue || !errors.As(err, &ce) || ce.Code != cmdkit.ExitNotRunning {
			return err
		}
	} else if wants(filter, runKinds) {
		for _, r := range runRecords(st, time.Now()) {
			if filter.Match(r) {
				recs = append(recs, r)
			}
		}
	}
	at := time.Now()
	who, gen := "zd-run", uint64(max(st.Generation, 0))
	switch {
	case haveRun && askQueue:
		who = "zd"
	case askQueue:
		who = "zd-queue"
	}
	out := c.String("output")
	if out == "" {
		dir := filepath.Join(filepath.Dir(sock), statedir.SnapshotsDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("snapshots directory: %w", err)
		}
		out = filepath.Join(dir, fmt.Sprintf("%s-%d-%s.zds", who, gen, at.UTC().Format("20060102T150405.000Z")))
	}
	writer := "zdctl snapshot (zd-run " + st.Name + ")"
	switch {
	case haveRun && askQueue:
		writer = "zdctl snapshot (zd-run " + st.Name + ", zd-queue)"
	case askQueue:
		writer = "zdctl snapshot (zd-queue)"
	}
	opt := snapshot.Options{Key: key, Writer: writer, Generation: gen, Created: at}
	if !askQueue {
		opt.Records = int64(len(recs)) // known up front only without zd-queue
	}
	fw, err := snapshot.Create(out, opt)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := fw.Write(r); err != nil {
			fw.Abort()
			return fmt.Errorf("snapshot record %s: %w", r.ID, err)
		}
	}
	var qs *queueapi.SnapshotResult
	if askQueue {
		res, err := queueSnapshot(ctx, qsock, filter, key != nil, fw)
		switch {
		case err == nil:
			qs = &res
		case errors.Is(err, control.ErrNotRunning) && haveRun:
			// A socket file left by a zd-queue that is gone: zd-run's part stands.
			fmt.Fprintf(io.Stderr, "zdctl: zd-queue is not running (nothing answers on %s); the snapshot has zd-run's state only\n", qsock)
		default:
			fw.Abort()
			return queueSnapshotError(err, qsock)
		}
	}
	n := fw.Count()
	if err := fw.Close(); err != nil {
		return err
	}
	if c.Bool("json") {
		res := snapshotOut{File: out, Records: n, Encrypted: key != nil, Queue: qs}
		if key != nil {
			res.KeyID = snapshot.KeyID(key)
		}
		if haveRun {
			res.Run = &runPart{Name: st.Name, Generation: st.Generation, Records: int64(len(recs))}
		}
		return writeJSON(io.Stdout, res)
	}
	sealed := "plain"
	if key != nil {
		sealed = "aes-256-gcm key id " + snapshot.KeyID(key)
	}
	var parts []string
	if haveRun {
		parts = append(parts, fmt.Sprintf("zd-run %s, generation %d", st.Name, st.Generation))
	}
	if qs != nil {
		parts = append(parts, "zd-queue "+byKind(qs.ByKind))
	}
	parts = append(parts, sealed)
	fmt.Fprintf(io.Stdout, "%s: %d records (%s)\n", out, n, strings.Join(parts, "; "))
	return nil
}

// snapshotOut is zdctl snapshot --json.
type snapshotOut struct {
	File      string                   `json:"file"`
	Records   int64                    `json:"records"`
	Encrypted bool                     `json:"encrypted"`
	KeyID     string                   `json:"key_id,omitempty"`
	Run       *runPart                 `json:"zd_run"`   // null without zd-run
	Queue     *queueapi.SnapshotResult `json:"zd_queue"` // null without zd-queue
}

type runPart struct {
	Name       string `json:"name"`
	Generation int    `json:"generation"`
	Records    int64  `json:"records"`
}

// byKind says "3 tcp-conn, 2 ws-session, 0 http-request".
func byKind(n map[string]int64) string {
	var l []string
	for _, k := range queueKinds {
		l = append(l, fmt.Sprintf("%d %s", n[string(k)], k))
	}
	return strings.Join(l, ", ")
}

// queueSnapshot streams zd-queue's records into fw. Every record is
// decoded (and so vetted) as it comes; the count zd-queue says it sent
// must be the count received.
func queueSnapshot(ctx context.Context, sock string, f snapshot.Filter, credentials bool, fw *snapshot.FileWriter) (queueapi.SnapshotResult, error) {
	var (
		res  queueapi.SnapshotResult
		got  int64
		part []byte
	)
	args := queueapi.SnapshotArgs{Filter: f.String(), Credentials: credentials}
	put := func(b []byte) error {
		var r snapshot.Record
		if err := r.UnmarshalMsgpack(b); err != nil {
			return fmt.Errorf("record %d from zd-queue: %w", got+1, err)
		}
		if err := fw.Write(&r); err != nil {
			return fmt.Errorf("snapshot record %s: %w", r.ID, err)
		}
		got++
		return nil
	}
	err := control.CallStream(ctx, sock, queueapi.OpSnapshot, args, func(raw msgpack.RawMessage) error {
		var b queueapi.SnapshotBatch
		if err := control.Unmarshal(raw, &b); err != nil {
			return fmt.Errorf("snapshot event from zd-queue: %w", err)
		}
		if len(b.Part) > 0 {
			if len(part)+len(b.Part) > snapshot.MaxBytes*4 {
				return errors.New("snapshot event from zd-queue: a record in pieces longer than any record can be")
			}
			part = append(part, b.Part...)
			if !b.Last {
				return nil
			}
			err := put(part)
			part = nil
			return err
		}
		for _, rb := range b.Records {
			if err := put(rb); err != nil {
				return err
			}
		}
		return nil
	}, &res)
	if err != nil {
		return res, err
	}
	if part != nil {
		return res, errors.New("zd-queue ended the snapshot inside a record sent in pieces")
	}
	if got != res.Records {
		return res, fmt.Errorf("zd-queue said it sent %d records; %d arrived", res.Records, got)
	}
	return res, nil
}

// queueSnapshotError is a failed queue snapshot as the user sees it.
func queueSnapshotError(err error, sock string) error {
	if errors.Is(err, control.ErrNotRunning) {
		return &cmdkit.Error{Code: cmdkit.ExitNotRunning, Message: "zd-queue is not running (nothing answers on " + sock + ")",
			Hint: "start it, or give the --name or --state-dir it runs with"}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &cmdkit.Error{Code: cmdkit.ExitTimeout, Message: "zd-queue did not send its whole state in time; no snapshot written",
			Hint: "raise --timeout, or narrow it with --filter"}
	}
	var ce *control.Error
	if errors.As(err, &ce) {
		return callError(err, sock)
	}
	return cmdkit.Wrap(err, cmdkit.ExitFailure, "")
}

// runRecords turns zd-run's status into snapshot records: its listeners,
// which each worker gets at fd 3, 4, ... in this order, and its workers.
func runRecords(st runapi.Status, at time.Time) []*snapshot.Record {
	var recs []*snapshot.Record
	for i, l := range st.Listeners {
		name, addr, ok := strings.Cut(l, "=")
		if !ok {
			name, addr = "", l
		}
		network, host, ok := strings.Cut(addr, "://")
		if !ok {
			network, host = "", addr
		}
		recs = append(recs, &snapshot.Record{Kind: snapshot.KindListener, ID: fmt.Sprintf("listener-%d", i),
			State: snapshot.StateListening, Network: network, Local: host, Name: name, FD: 3 + i, Worker: st.PID,
			Generation: uint64(max(st.Generation, 0))})
	}
	for _, w := range st.Workers {
		r := &snapshot.Record{Kind: snapshot.KindWorker, ID: fmt.Sprintf("worker-%d-%d", w.Slot, w.PID), Worker: w.PID,
			Generation: uint64(max(w.Generation, 0)), Slot: w.Slot, Backend: string(w.Backend), Release: w.Release,
			Status: string(w.Status)}
		switch s := snapshot.State(w.State); s {
		case snapshot.StateStarting, snapshot.StateReady, snapshot.StateDraining, snapshot.StateStopping:
			r.State = s
		default:
			if r.Status == "" {
				r.Status = w.State // exited, or a state newer than the schema: kept as text
			}
		}
		if w.StartedAt > 0 {
			r.Created = time.UnixMilli(w.StartedAt).UTC()
		}
		if w.ReadyAt > 0 {
			r.LastActive = time.UnixMilli(w.ReadyAt).UTC()
		}
		if r.Created.After(at) {
			r.Created = at
		}
		recs = append(recs, r)
	}
	return recs
}
