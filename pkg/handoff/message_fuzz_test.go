package handoff

import (
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzStatus decodes arbitrary bytes as the messages of a release (status)
// and as a request: no panic, and what decodes re-encodes to the same
// message.
func FuzzStatus(f *testing.F) {
	for _, v := range []any{
		Status{V: Version, Op: OpExec},
		Status{V: Version, Op: OpReady, PID: 4242, Path: "/run/app/.zdh4242", Socket: "/run/app/h.sock"},
		Status{V: Version, Op: OpAbort, Error: "not ready within the old server's --release-timeout 30s"},
		Request{V: Version, Op: OpTake, Names: []string{"web"}, Release: true},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st Status
		if err := msgpack.Unmarshal(b, &st); err == nil {
			enc, err := msgpack.Marshal(st)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", st, err)
			}
			var st2 Status
			if err := msgpack.Unmarshal(enc, &st2); err != nil || st2 != st {
				t.Fatalf("round trip of %+v: %+v, %v", st, st2, err)
			}
		}
		var req Request
		if err := msgpack.Unmarshal(b, &req); err == nil {
			enc, err := msgpack.Marshal(req)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", req, err)
			}
			var req2 Request
			if err := msgpack.Unmarshal(enc, &req2); err != nil || !reflect.DeepEqual(normal(req), normal(req2)) {
				t.Fatalf("round trip of %+v: %+v, %v", req, req2, err)
			}
		}
	})
}

// normal makes an empty name list nil (omitempty drops it).
func normal(r Request) Request {
	if len(r.Names) == 0 {
		r.Names = nil
	}
	return r
}

// FuzzReply decodes arbitrary bytes as a server's reply, what a taker
// reads first: no panic, and what decodes re-encodes to the same reply.
func FuzzReply(f *testing.F) {
	for _, v := range []Reply{
		{V: Version, OK: true, PID: 42, FDs: []Offer{{Name: "web", Family: "inet", Type: "stream", Local: "127.0.0.1:8080"}}},
		{V: Version, PID: 42, Error: &ReplyError{Message: "no descriptor named x on offer (offered: web)", Hint: "run zd-handoff ls"}},
		{V: BaseVersion, OK: true, PID: 7},
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rep Reply
		if err := msgpack.Unmarshal(b, &rep); err != nil {
			return
		}
		enc, err := msgpack.Marshal(rep)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", rep, err)
		}
		var rep2 Reply
		if err := msgpack.Unmarshal(enc, &rep2); err != nil || !reflect.DeepEqual(normalReply(rep), normalReply(rep2)) {
			t.Fatalf("round trip of %+v: %+v, %v", rep, rep2, err)
		}
	})
}

// normalReply makes an empty offer list nil (omitempty drops it).
func normalReply(r Reply) Reply {
	if len(r.FDs) == 0 {
		r.FDs = nil
	}
	return r
}
