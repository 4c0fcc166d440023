package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/snapshot"
)

// MigrationTest is POST /_zero-downtime/test-migration: SelfTest (a
// request held and replayed), then SnapshotRoundTrip. Live traffic is
// neither paused nor slowed by either.
func (p *Proxy) MigrationTest(ctx context.Context) queueapi.MigrationTest {
	res := queueapi.MigrationTest{SelfTestResult: p.SelfTest(ctx)}
	res.Snapshot = p.SnapshotRoundTrip(ctx)
	res.OK = res.SelfTestResult.OK && res.Snapshot.OK
	return res
}

// SnapshotRoundTrip writes a snapshot of the live state (Snapshot, every
// kind, credentials included) to a temporary file sealed with a key made
// for it, reads it back whole and compares the counts by kind. It removes
// the file and forgets the key whatever happens.
func (p *Proxy) SnapshotRoundTrip(ctx context.Context) (res queueapi.SnapshotRoundTrip) {
	res = queueapi.SnapshotRoundTrip{Written: map[string]int64{}, Read: map[string]int64{}}
	start := time.Now()
	defer func() { res.TotalMS = ms(time.Since(start)) }()
	fail := func(err error) queueapi.SnapshotRoundTrip {
		res.Error = err.Error()
		return res
	}
	dir, err := os.MkdirTemp("", "zd-test-migration-")
	if err != nil {
		return fail(fmt.Errorf("temporary directory: %w", err))
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "live.zds")
	key := snapshot.GenerateKey()
	p.mu.Lock()
	gen := p.lastTable.Generation
	p.mu.Unlock()
	fw, err := snapshot.Create(path, snapshot.Options{Key: key, Writer: "zd-queue test-migration", Generation: uint64(max(gen, 0))})
	if err != nil {
		return fail(err)
	}
	st, err := p.Snapshot(ctx, SnapshotOptions{Credentials: true}, fw.Write)
	res.WriteMS = ms(time.Since(start))
	res.LockMaxUS = float64(st.LockMax.Nanoseconds()) / 1e3
	res.Skipped = st.Skipped
	for k, n := range st.ByKind {
		res.Written[string(k)] = n
	}
	res.Records = st.Records
	if err != nil {
		fw.Abort()
		return fail(fmt.Errorf("write the snapshot: %w", err))
	}
	t := time.Now()
	if err := fw.Close(); err != nil {
		return fail(err)
	}
	res.CloseMS = ms(time.Since(t))
	if fi, err := os.Stat(path); err == nil {
		res.Bytes = fi.Size()
	}
	t = time.Now()
	err = readBack(ctx, path, key, res.Read)
	res.ReadMS = ms(time.Since(t))
	if err != nil {
		return fail(fmt.Errorf("read the snapshot back: %w", err))
	}
	if !maps.Equal(res.Written, res.Read) {
		return fail(fmt.Errorf("read back %v; wrote %v", res.Read, res.Written))
	}
	res.OK = true
	return res
}

// readBack reads the snapshot at path to its end marker, counting the
// records by kind into n.
func readBack(ctx context.Context, path string, key []byte, n map[string]int64) error {
	fr, err := snapshot.Open(path, key)
	if err != nil {
		return err
	}
	defer fr.Close()
	var r snapshot.Record
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fr.Read(&r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		n[string(r.Kind)]++
	}
}
