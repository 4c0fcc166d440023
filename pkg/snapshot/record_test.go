package snapshot

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRecordRoundTrip(t *testing.T) {
	for i := range 20 {
		r := sample(i)
		b, err := r.MarshalMsgpack()
		if err != nil {
			t.Fatalf("MarshalMsgpack(sample %d): %v", i, err)
		}
		var got Record
		if err := got.UnmarshalMsgpack(b); err != nil {
			t.Fatalf("UnmarshalMsgpack(sample %d): %v", i, err)
		}
		if !reflect.DeepEqual(&got, r) {
			t.Errorf("sample %d round trip:\n got %+v\nwant %+v", i, got, *r)
		}
	}
}

func TestRecordExtremes(t *testing.T) {
	r := &Record{Kind: KindTCPConn, ID: strings.Repeat("x", MaxString), Worker: math.MaxInt32,
		BytesIn: math.MaxUint64, BytesOut: 1 << 40, Created: time.Unix(0, -5).UTC(),
		PendingIn: make([]byte, 70000), Headers: make([]HeaderField, 20), Attrs: map[string]string{}}
	for i := range r.Headers {
		r.Headers[i] = HeaderField{Name: "X-H", Value: strings.Repeat("v", i*20)}
	}
	for i := range 300 {
		r.Attrs[strings.Repeat("k", i+1)] = "v"
	}
	b, err := r.MarshalMsgpack()
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := got.UnmarshalMsgpack(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, r) {
		t.Errorf("extreme record does not round trip")
	}
	// The vmihailenco decoder reads the same bytes.
	var m map[int]any
	if err := msgpack.Unmarshal(b, &m); err != nil || m[fKind] != "tcp-conn" {
		t.Errorf("msgpack.Unmarshal = %v, %v", m[fKind], err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		r     Record
		field string
	}{
		{Record{ID: "a"}, "kind"},
		{Record{Kind: "websocket", ID: "a"}, "kind"},
		{Record{Kind: KindWSSession}, "id"},
		{Record{Kind: KindWSSession, ID: "a", State: StateReady}, "state"},
		{Record{Kind: KindWorker, ID: "a", State: StateActive}, "state"},
		{Record{Kind: KindWorker, ID: "a", MsgsIn: 1}, "worker"},
		{Record{Kind: KindTCPConn, ID: "a", Subprotocol: "x"}, "tcp-conn"},
		{Record{Kind: KindWSSession, ID: "a", Body: []byte("x")}, "ws-session"},
		{Record{Kind: KindHTTPRequest, ID: "a", FD: 3}, "http-request"},
		{Record{Kind: KindWSSession, ID: "a", Headers: []HeaderField{{"", "v"}}}, "headers"},
		{Record{Kind: KindWSSession, ID: strings.Repeat("i", MaxString+1)}, "id"},
		{Record{Kind: KindWSSession, ID: "a", PendingIn: make([]byte, MaxBytes+1)}, "pending_in"},
		{Record{Kind: KindWSSession, ID: "a", Extensions: make([]string, MaxList+1)}, "extensions"},
		{Record{Kind: KindWSSession, ID: "a", Attrs: map[string]string{"": "v"}}, "attrs"},
	} {
		err := c.r.Validate()
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Validate(%+v) = %v; want ErrSchema naming %s", c.r.Kind, err, c.field)
		}
		// A Writer refuses it the same (it checks attributes as it encodes
		// them), writes nothing of it, and goes on.
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(&c.r); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Write(%+v) = %v; want ErrSchema naming %s", c.r.Kind, err, c.field)
		}
		if err := w.Write(sample(0)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rd, err := NewReader(&buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got Record
		if err := rd.Read(&got); err != nil || got.ID != sample(0).ID {
			t.Errorf("after a refused Write, the file's first record = %q, %v; want %q", got.ID, err, sample(0).ID)
		}
		if err := rd.Read(&got); err != io.EOF {
			t.Errorf("after a refused Write, a second record: %v; want io.EOF", err)
		}
	}
	for i := range 20 {
		if err := sample(i).Validate(); err != nil {
			t.Errorf("Validate(sample %d) = %v", i, err)
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, b := range map[string][]byte{
		"not a map":       enc([]int{1, 2}),
		"unknown field":   enc(map[int]any{fKind: "tcp-conn", fID: "a", 99: 1}),
		"string key":      enc(map[string]any{"kind": "tcp-conn"}),
		"wrong type":      enc(map[int]any{fKind: "tcp-conn", fID: 5}),
		"negative count":  enc(map[int]any{fKind: "ws-session", fID: "a", fMsgsIn: -1}),
		"odd headers":     enc(map[int]any{fKind: "ws-session", fID: "a", fHeaders: []string{"Host"}}),
		"pid too big":     enc(map[int]any{fKind: "ws-session", fID: "a", fWorker: int64(1) << 40}),
		"unknown kind":    enc(map[int]any{fKind: "nope", fID: "a"}),
		"truncated":       enc(map[int]any{fKind: "ws-session", fID: "abc"})[:8],
		"deep nesting":    []byte(strings.Repeat("\x91", 100) + "\x01"),
		"huge declared":   {0xdd, 0xff, 0xff, 0xff, 0xff},
		"dup field":       {0x82, fKind, 0xa8, 't', 'c', 'p', '-', 'c', 'o', 'n', 'n', fKind, 0xa1, 'x'},
		"bytes for str":   enc(map[int]any{fKind: "ws-session", fID: []byte("a")}),
		"str for bytes":   enc(map[int]any{fKind: "ws-session", fID: "a", fPendingIn: "x"}),
		"float for int":   enc(map[int]any{fKind: "ws-session", fID: "a", fWorker: 1.5}),
		"map for attrs":   enc(map[int]any{fKind: "ws-session", fID: "a", fAttrs: []string{"a"}}),
		"int attr values": enc(map[int]any{fKind: "ws-session", fID: "a", fAttrs: map[string]int{"a": 1}}),
	} {
		var r Record
		if err := r.UnmarshalMsgpack(b); !errors.Is(err, ErrSchema) {
			t.Errorf("UnmarshalMsgpack(%s) = %v; want ErrSchema", name, err)
		}
	}
}
