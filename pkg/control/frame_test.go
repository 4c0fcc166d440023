package control

import (
	"bytes"
	"errors"
	"github.com/zdtools/zd/pkg/msgpackcheck"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestFrameRoundTrip(t *testing.T) {
	type payload struct {
		V    int               `msgpack:"v"`
		Name string            `msgpack:"name"`
		When time.Time         `msgpack:"when"`
		Tags map[string]string `msgpack:"tags"`
		List []int64           `msgpack:"list"`
	}
	in := payload{V: 1, Name: "web", When: time.Unix(1700000000, 5).UTC(), Tags: map[string]string{"a": "b"}, List: []int64{-1, 1 << 40}}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, map[string]any{"v": 1, "x": nil}); err != nil {
		t.Fatal(err)
	}
	var out payload
	if err := ReadFrame(&buf, 0, &out); err != nil {
		t.Fatal(err)
	}
	out.When = out.When.UTC()
	if !reflect.DeepEqual(in, out) {
		t.Errorf("ReadFrame = %+v; want %+v", out, in)
	}
	var m map[string]any
	if err := ReadFrame(&buf, 0, &m); err != nil || len(m) != 2 {
		t.Errorf("second ReadFrame = %v, %v", m, err)
	}
	if err := ReadFrame(&buf, 0, &m); err != io.EOF {
		t.Errorf("ReadFrame at the end = %v; want io.EOF", err)
	}
}

func TestFrameLimits(t *testing.T) {
	big := map[string]string{"s": strings.Repeat("x", DefaultMaxFrameSize)}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, big); !errors.Is(err, ErrFrameTooLarge) || buf.Len() != 0 {
		t.Errorf("WriteFrame(too big) = %v, wrote %d bytes; want ErrFrameTooLarge, nothing written", err, buf.Len())
	}
	WriteFrame(&buf, map[string]string{"s": strings.Repeat("x", 100)})
	if err := ReadFrame(&buf, 50, &struct{}{}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("ReadFrame over max = %v; want ErrFrameTooLarge", err)
	}
	if err := WriteFrame(&buf, func() {}); err == nil {
		t.Error("WriteFrame(func) = nil; want error")
	}
}

// TestWellFormed: everything the encoder writes passes, and nothing
// else hangs, panics or recurses.
func TestWellFormed(t *testing.T) {
	values := []any{nil, true, 1, -1, -33, 1 << 20, -1 << 40, uint64(1 << 63), 1.5, float32(2.5), "", "s", strings.Repeat("x", 40), strings.Repeat("y", 300), strings.Repeat("z", 70000),
		[]byte{1, 2}, make([]byte, 300), make([]byte, 70000), []int{}, make([]int, 20), make([]int, 70000), map[string]int{"a": 1},
		map[string]any{"m": map[string]any{"n": []any{1, "2", nil}}}, time.Now(), time.Unix(1, 0), time.Unix(1<<40, 5)}
	big := map[int]int{}
	for i := 0; i < 20; i++ {
		big[i] = i
	}
	values = append(values, big)
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := msgpackcheck.Check(b, MaxDepth); err != nil {
			t.Errorf("Check(Marshal(%T)) = %v", v, err)
		}
		if len(b) > 1 {
			if err := msgpackcheck.Check(b[:len(b)-1], MaxDepth); err == nil {
				t.Errorf("Check(truncated %T) = nil; want error", v)
			}
		}
	}
	var nest any = 1
	for i := 0; i < MaxDepth; i++ {
		nest = []any{nest}
	}
	b, _ := msgpack.Marshal(nest)
	if err := msgpackcheck.Check(b, MaxDepth); err != nil {
		t.Errorf("Check(%d deep) = %v", MaxDepth, err)
	}
	b, _ = msgpack.Marshal([]any{nest})
	if err := msgpackcheck.Check(b, MaxDepth); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("Check(%d deep) = %v; want too deep", MaxDepth+1, err)
	}
}

// FuzzReadFrame checks that ReadFrame never panics, and that a frame it
// accepts survives a WriteFrame/ReadFrame round trip.
func FuzzReadFrame(f *testing.F) {
	for _, v := range []any{
		map[string]any{"v": 1, "op": "status"},
		map[string]any{"v": 1, "ok": true, "result": map[string]any{"generation": 3}},
		map[string]any{"v": 1, "event": []any{"x", 1}},
	} {
		var buf bytes.Buffer
		WriteFrame(&buf, v)
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req requestIn
		ReadFrame(bytes.NewReader(b), 1<<16, &req)
		var resp responseIn
		ReadFrame(bytes.NewReader(b), 1<<16, &resp)
		var m map[string]any
		if err := ReadFrame(bytes.NewReader(b), 1<<16, &m); err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatalf("WriteFrame(ReadFrame(%x)) = %v", b, err)
		}
		var m2 map[string]any
		if err := ReadFrame(&buf, 1<<16, &m2); err != nil {
			t.Fatalf("ReadFrame(WriteFrame(ReadFrame(%x))) = %v", b, err)
		}
		if a, c := sorted(t, m), sorted(t, m2); !bytes.Equal(a, c) {
			t.Fatalf("round trip of %x changed the value: %x vs %x", b, a, c)
		}
	})
}

func sorted(t *testing.T, v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
