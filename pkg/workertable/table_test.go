package workertable

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func sample() *Table {
	t0 := time.Date(2026, 11, 25, 18, 0, 0, 123456789, time.UTC)
	return &Table{
		Name: "web", SupervisorPID: 100, Strategy: "rolling", Generation: 3, Health: HealthReloading, Updated: t0,
		Workers: []Worker{
			{Slot: 1, Generation: 3, PID: 13, State: StateReady, Backend: "unix:///run/zd/web/w1.3.sock", Release: "/srv/releases/43/app", StartedAt: t0, ReadyAt: t0.Add(time.Second), RSSBytes: 1 << 20, Status: "serving"},
			{Slot: 0, Generation: 2, PID: 10, State: StateDraining, Backend: "unix:///run/zd/web/w0.2.sock"},
			{Slot: 0, Generation: 3, PID: 12, State: StateReady, Backend: "unix:///run/zd/web/w0.3.sock", Restarts: 2},
			{Slot: 2, Generation: 3, PID: 14, State: StateStarting},
			{Slot: 0, Generation: 1, PID: 9, State: StateReady},
		},
	}
}

func TestEncodeDecode(t *testing.T) {
	in := sample()
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(t)) = %v", err)
	}
	if out.Version != Version {
		t.Errorf("Version = %d; want %d", out.Version, Version)
	}
	if !out.Updated.Equal(in.Updated) || !out.Workers[0].ReadyAt.Equal(in.Workers[0].ReadyAt) {
		t.Errorf("times = %v, %v; want %v, %v", out.Updated, out.Workers[0].ReadyAt, in.Updated, in.Workers[0].ReadyAt)
	}
	again, _ := Encode(out)
	if !bytes.Equal(again, b) {
		t.Errorf("Encode(Decode(b)) differs from b")
	}
	// The keys on the wire are the documented snake_case names.
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "name", "supervisor_pid", "strategy", "generation", "health", "updated", "workers"} {
		if _, ok := m[k]; !ok {
			t.Errorf("encoded table lacks key %q", k)
		}
	}
	w0 := m["workers"].([]any)[0].(map[string]any)
	for _, k := range []string{"slot", "generation", "pid", "state", "backend", "release", "started_at", "ready_at", "restarts", "rss_bytes", "status"} {
		if _, ok := w0[k]; !ok {
			t.Errorf("encoded worker lacks key %q", k)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	other := sample()
	other.Version = 2
	b2, _ := msgpack.Marshal(other)
	good, _ := Encode(sample())
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"array", []byte{0x90}, "not a msgpack map"},
		{"version", b2, "version 2, this build reads 1"},
		{"no version", []byte{0x80}, "version 0, this build reads 1"},
		{"trailing", append(append([]byte(nil), good...), 0xc0), "1 bytes after the value"},
		{"truncated", good[:len(good)/2], "decode worker table"},
		{"deep", append([]byte{0x81, 0xa1, 'x'}, append(bytes.Repeat([]byte{0x91}, 100000), 0xc0)...), "nested more than 16 deep"},
		{"huge declared map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"wrong type", []byte{0x81, 0xa4, 'n', 'a', 'm', 'e', 0x90}, "decode worker table"},
	}
	for _, tt := range tests {
		_, err := Decode(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v; want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := Encode(other); err == nil {
		t.Error("Encode(version 2) = nil; want error")
	}
}

func TestReady(t *testing.T) {
	got := sample().Ready()
	want := []struct{ slot, gen int }{{0, 3}, {0, 1}, {1, 3}}
	if len(got) != len(want) {
		t.Fatalf("Ready() = %d workers; want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Slot != w.slot || got[i].Generation != w.gen || got[i].State != StateReady {
			t.Errorf("Ready()[%d] = slot %d gen %d %s; want slot %d gen %d ready", i, got[i].Slot, got[i].Generation, got[i].State, w.slot, w.gen)
		}
	}
	if len((&Table{}).Ready()) != 0 {
		t.Error("Ready() of an empty table is not empty")
	}
}

func TestStoreLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workers.msgpack")
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want fs.ErrNotExist", err)
	}
	if err := Store(path, sample()); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || got.Name != "web" || len(got.Workers) != 5 {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(garbage) = %v; want an error naming the file", err)
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// encodes back to a table that decodes the same.
func FuzzDecode(f *testing.F) {
	b, _ := Encode(sample())
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(tab)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)) = %v", b, err)
		}
		tab2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%x))) = %v", b, err)
		}
		enc2, err := Encode(tab2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip of %x not stable: %x vs %x (%v)", b, enc, enc2, err)
		}
	})
}
