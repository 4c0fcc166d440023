package queueapi

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TestTagsAgree checks that every field of every wire type has the same
// name in msgpack (queue.sock) and JSON (zdctl --json, the admin status),
// so one name is documented for both.
func TestTagsAgree(t *testing.T) {
	for _, v := range []any{Status{}, WorkerStats{}, TableStatus{}, BackendStatus{}, BufferStats{},
		BackendArgs{}, DrainArgs{}, WatchArgs{}, FlushResult{}, DrainResult{}, SelfTestResult{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			mp, js := f.Tag.Get("msgpack"), f.Tag.Get("json")
			if mp == "" || js == "" {
				t.Errorf("%s.%s: msgpack tag %q, json tag %q; want both", typ.Name(), f.Name, mp, js)
				continue
			}
			if mn, jn := strings.Split(mp, ",")[0], strings.Split(js, ",")[0]; mn != jn {
				t.Errorf("%s.%s: msgpack name %q, json name %q; want one name", typ.Name(), f.Name, mn, jn)
			}
		}
	}
}

// TestStatusRoundTrip sends a Status through msgpack as queue.sock does.
func TestStatusRoundTrip(t *testing.T) {
	in := Status{Health: HealthReloading, Paused: true, BufferedRequests: 3,
		Table:    &TableStatus{Path: "/run/zd/x/workers.msgpack", Generation: 4, Health: "healthy", Loaded: time.UnixMilli(1700000000123).UTC()},
		Buffer:   BufferStats{Held: 3, HeldByPriority: map[string]int{"0": 2, "10": 1}, Rejected: map[string]uint64{"overflow": 1}},
		Backends: []BackendStatus{{Addr: "unix:///run/zd/x/w1.4.sock", State: BackendDraining, InFlight: 2, Slot: 1, Generation: 4, PID: 99}},
	}
	b, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Status
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out.Table.Loaded = out.Table.Loaded.UTC()
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}
