package zdctl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/snapshot"
	"github.com/zdtools/zd/pkg/statedir"
)

func snapshotCommand(io cmdkit.IO) *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "write a .zds snapshot of what zd-run holds now: its listeners and workers, with generations",
		Description: "Asks zd-run on run.sock for its state (the status call: it changes nothing) and writes\n" +
			"one listener record per listening socket and one worker record per worker (pid, slot,\n" +
			"generation, state, backend, release) to a .zds file, by default\n" +
			"STATE_DIR/snapshots/zd-run-GENERATION-TIME.zds. Read it with zd-snapshot inspect.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the snapshot to `FILE` (default STATE_DIR/snapshots/zd-run-GEN-TIME.zds)"},
			&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, Usage: "only records matching `TERMS` (zd-snapshot's syntax: kind=worker,state=ready,worker=PID)"},
			&cli.StringFlag{Name: "key-file", Aliases: []string{"k"}, Usage: "encrypt with the key in `FILE`; else $ZD_SNAPSHOT_KEY or $CONNECTION_STATE_KEY; else plain",
				Sources: cmdkit.EnvVars("ZD_SNAPSHOT_KEY_FILE")},
		},
		Action: func(ctx context.Context, c *cli.Command) error { return writeSnapshot(ctx, c, io) },
	}
}

func writeSnapshot(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	root := c.Root()
	filter, err := snapshot.ParseFilter(c.String("filter"))
	if err != nil {
		return cmdkit.UsageError("e.g. --filter kind=worker,state=ready", "%v", err)
	}
	var key []byte
	if path := c.String("key-file"); path != "" {
		if key, err = snapshot.ReadKeyFile(path); err != nil {
			return cmdkit.Wrap(err, cmdkit.ExitUsage, "zd-snapshot keygen -o FILE makes a key; a key file must be mode 0600")
		}
	} else if key, _, err = snapshot.KeyFromEnv(io.Getenv); err != nil {
		return cmdkit.Wrap(err, cmdkit.ExitUsage, "set it to 64 hex digits (zd-snapshot keygen prints one)")
	}
	sock := runSock(root, io)
	st, err := getStatus(ctx, sock)
	if err != nil {
		return err
	}
	at := time.Now()
	recs := runRecords(st, at)
	out := c.String("output")
	if out == "" {
		dir := filepath.Join(filepath.Dir(sock), statedir.SnapshotsDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("snapshots directory: %w", err)
		}
		out = filepath.Join(dir, fmt.Sprintf("zd-run-%d-%s.zds", st.Generation, at.UTC().Format("20060102T150405.000Z")))
	}
	var n int64
	for _, r := range recs {
		if filter.Match(r) {
			n++
		}
	}
	fw, err := snapshot.Create(out, snapshot.Options{Key: key, Writer: "zdctl snapshot (zd-run " + st.Name + ")",
		Generation: uint64(max(st.Generation, 0)), Records: n, Created: at})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if !filter.Match(r) {
			continue
		}
		if err := fw.Write(r); err != nil {
			fw.Abort()
			return fmt.Errorf("snapshot record %s: %w", r.ID, err)
		}
	}
	if err := fw.Close(); err != nil {
		return err
	}
	sealed := "plain"
	if key != nil {
		sealed = "aes-256-gcm key id " + snapshot.KeyID(key)
	}
	fmt.Fprintf(io.Stdout, "%s: %d records (zd-run %s, generation %d; %s)\n", out, n, st.Name, st.Generation, sealed)
	return nil
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
