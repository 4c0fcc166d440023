package supervisor

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzParseReady: every --ready value either parses into a spec whose
// String parses back to the same spec, or is refused; never a panic.
func FuzzParseReady(f *testing.F) {
	for _, s := range []string{"notify", "tcp:127.0.0.1:80", "http://127.0.0.1:{slot}/healthz", "exec:true", "delay:2s", "tcp:", "delay:-1s", "https://x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReady(s)
		if err != nil {
			return
		}
		r2, err := ParseReady(r.String())
		if err != nil || r2 != r {
			t.Errorf("ParseReady(%q) = %+v; its String %q parses to %+v, %v", s, r, r.String(), r2, err)
		}
	})
}

// FuzzDecodeCarried: the upgrade memfd decoder refuses garbage without a
// panic, and a state it accepts survives a round trip.
func FuzzDecodeCarried(f *testing.F) {
	good, _ := msgpack.Marshal(&carriedState{Version: 1, Gen: 3, Gens: []genRecord{{Gen: 3, Release: "/srv/app"}},
		Started: time.Unix(1700000000, 0).UTC(),
		Workers: []carriedWorker{{Slot: 0, Gen: 3, PID: 1234, Current: true, Release: "/srv/app", State: StateReady}}})
	f.Add(good)
	f.Add([]byte{0x80})
	f.Add([]byte("not msgpack"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeCarried(b)
		if err != nil {
			return
		}
		b2, err := msgpack.Marshal(&st)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := decodeCarried(b2); err != nil {
			t.Errorf("decodeCarried(re-encoded %+v) = %v", st, err)
		}
	})
}
