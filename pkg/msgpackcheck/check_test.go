package msgpackcheck

import (
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckAcceptsWhatMarshalWrites(t *testing.T) {
	for _, v := range []any{
		nil, true, 1, -1, 1 << 40, 1.5, "", "text", strings.Repeat("x", 70000),
		[]byte{1, 2, 3}, []any{1, "a", nil}, map[string]any{"a": 1, "b": []any{2}},
		make([]int, 70000),
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(b, 8); err != nil {
			t.Errorf("Check(Marshal(%T)) = %v; want nil", v, err)
		}
		if len(b) > 1 {
			if err := Check(b[:len(b)-1], 8); err == nil {
				t.Errorf("Check(truncated %T) = nil; want error", v)
			}
		}
		if err := Check(append(b, 0), 8); err == nil || !strings.Contains(err.Error(), "after the value") {
			t.Errorf("Check(%T + trailing byte) = %v; want bytes after the value", v, err)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"reserved byte", []byte{0xc1}, "invalid byte"},
		{"array32 declaring 4G items", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"str32 declaring 4 GiB", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, "truncated"},
		{"map16 missing values", []byte{0xde, 0x00, 0x02, 0x01}, "truncated"},
	} {
		err := Check(c.b, 8)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Check(% x) = %v; want %q", c.name, c.b, err, c.want)
		}
	}
}

func TestCheckDepth(t *testing.T) {
	var nest any = 1
	for i := 0; i < 8; i++ {
		nest = []any{nest}
	}
	b, _ := msgpack.Marshal(nest)
	if err := Check(b, 8); err != nil {
		t.Errorf("Check(8 deep, max 8) = %v; want nil", err)
	}
	b, _ = msgpack.Marshal([]any{nest})
	if err := Check(b, 8); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("Check(9 deep, max 8) = %v; want nested too deep", err)
	}
}

// FuzzCheck: Check never panics, and whatever it accepts the decoder
// decodes without panicking or allocating out of proportion.
func FuzzCheck(f *testing.F) {
	for _, v := range []any{map[string]any{"v": 1, "op": "status"}, []any{1, "a", []byte{2}}, "x"} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b, 16) != nil {
			return
		}
		var v any
		_ = msgpack.Unmarshal(b, &v)
	})
}
