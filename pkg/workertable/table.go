// Package workertable is the worker table zd-run publishes in the state
// directory (workers.msgpack) and zd-queue routes by: which generation
// serves, and each worker's slot, pid, state and backend address.
//
// zd-run replaces the file atomically with Store; readers Load it, or Watch
// it to be called with every new version:
//
//	err := workertable.Watch(ctx, filepath.Join(dir, statedir.WorkersFile), func(t *workertable.Table) {
//		backends.Set(t.Ready())
//	})
package workertable

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"github.com/zdtools/zd/pkg/msgpackcheck"
	"os"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/statedir"
)

// Version is the table format written by Encode and the only one Decode
// accepts.
const Version = 1

// MaxSize bounds a table file; Load and Decode refuse larger ones.
const MaxSize = 16 << 20

// Worker states.
const (
	StateStarting = "starting" // spawned, not ready yet: gets no traffic
	StateReady    = "ready"    // serving: route to it
	StateDraining = "draining" // finishing in-flight work: no new requests
	StateStopping = "stopping" // stop signal sent
	StateExited   = "exited"   // gone; kept for status until the next table
)

// Service health.
const (
	HealthHealthy   = "healthy"   // every slot has a ready worker of the serving generation
	HealthReloading = "reloading" // a reload is in progress
	HealthDegraded  = "degraded"  // some slot has no ready worker
	HealthStopping  = "stopping"  // the service is shutting down
)

// Table is one published state of a zd-run supervisor.
type Table struct {
	Version       int       `msgpack:"v"`
	Name          string    `msgpack:"name"`
	SupervisorPID int       `msgpack:"supervisor_pid"`
	Strategy      string    `msgpack:"strategy"`
	Generation    int       `msgpack:"generation"` // the generation currently serving
	Health        string    `msgpack:"health"`     // Health* constants
	Updated       time.Time `msgpack:"updated"`
	Workers       []Worker  `msgpack:"workers"`
}

// Worker is one worker process.
type Worker struct {
	Slot       int    `msgpack:"slot"`
	Generation int    `msgpack:"generation"`
	PID        int    `msgpack:"pid"`
	State      string `msgpack:"state"` // State* constants
	// Backend is the worker's own address for zd-queue, e.g.
	// "unix:///run/zd/app/w0.3.sock" or "tcp://127.0.0.1:9001"; empty in the
	// kernel-only topology, where workers share the listeners.
	Backend   string    `msgpack:"backend"`
	Release   string    `msgpack:"release"` // resolved command path of the worker's generation
	StartedAt time.Time `msgpack:"started_at"`
	ReadyAt   time.Time `msgpack:"ready_at"`
	Restarts  int       `msgpack:"restarts"`
	RSSBytes  int64     `msgpack:"rss_bytes"`
	Status    string    `msgpack:"status"` // last STATUS= from the worker
}

// Ready returns the workers in state ready, ordered by slot (then by
// generation, newest first, for the moment of a rolling reload when a slot
// has two). The result is a copy.
func (t *Table) Ready() []Worker {
	var ws []Worker
	for _, w := range t.Workers {
		if w.State == StateReady {
			ws = append(ws, w)
		}
	}
	slices.SortStableFunc(ws, func(a, b Worker) int {
		if c := cmp.Compare(a.Slot, b.Slot); c != 0 {
			return c
		}
		return cmp.Compare(b.Generation, a.Generation)
	})
	return ws
}

// Encode returns t as msgpack. A zero Version is written as Version; any
// other version than Version is refused.
func Encode(t *Table) ([]byte, error) {
	if t == nil {
		return nil, errors.New("encode worker table: nil table")
	}
	c := *t
	if c.Version == 0 {
		c.Version = Version
	}
	if c.Version != Version {
		return nil, fmt.Errorf("encode worker table: version %d, this build writes %d", c.Version, Version)
	}
	b, err := msgpack.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode worker table: %w", err)
	}
	return b, nil
}

// maxDepth bounds how deeply arrays and maps may nest in a table file (a
// real one nests 3 deep); deeper input is refused before the decoder sees
// it.
const maxDepth = 16

// Decode parses a table written by Encode. It refuses data larger than
// MaxSize, data that is not one msgpack map decoding into a Table, trailing
// bytes, and a version other than Version (the error then names both
// versions: zd-run and its reader are from different releases).
func Decode(b []byte) (*Table, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("decode worker table: %d bytes, more than %d", len(b), MaxSize)
	}
	if len(b) == 0 {
		return nil, errors.New("decode worker table: empty")
	}
	if c := b[0]; !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		return nil, fmt.Errorf("decode worker table: not a msgpack map (first byte %#02x)", c)
	}
	if err := msgpackcheck.Check(b, maxDepth); err != nil {
		return nil, fmt.Errorf("decode worker table: %w", err)
	}
	var t Table
	if err := decode(bytes.NewReader(b), &t); err != nil {
		return nil, fmt.Errorf("decode worker table: %w", err)
	}
	if t.Version != Version {
		return nil, fmt.Errorf("decode worker table: version %d, this build reads %d (zd-run and its reader are from different releases)", t.Version, Version)
	}
	return &t, nil
}

// decode guards against msgpack v5.4.1 panicking on a nil where a
// time.Time (any non-pointer type with a custom decoder) is expected.
func decode(rd *bytes.Reader, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed msgpack (decoder panic: %v)", p)
		}
	}()
	return msgpack.NewDecoder(rd).Decode(v)
}

// Load reads and decodes the table at path. A missing file gives an error
// wrapping fs.ErrNotExist.
func Load(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load worker table: %w", err)
	}
	defer f.Close()
	return load(f, path)
}

func load(f *os.File, path string) (*Table, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load worker table %s: %w", path, err)
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("load worker table %s: %d bytes, more than %d", path, fi.Size(), MaxSize)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("load worker table %s: %w", path, err)
	}
	t, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

// Store encodes t and atomically replaces the file at path with it (mode
// 0600): readers see the old table or the new one, never a mix.
func Store(path string, t *Table) error {
	b, err := Encode(t)
	if err != nil {
		return err
	}
	if err := statedir.WriteFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("store worker table: %w", err)
	}
	return nil
}
