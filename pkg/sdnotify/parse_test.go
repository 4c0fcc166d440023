package sdnotify

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want []Field
	}{
		{"READY=1", []Field{{"READY", "1"}}},
		{"READY=1\nSTATUS=a=b c\n", []Field{{"READY", "1"}, {"STATUS", "a=b c"}}},
		{"\n\nSTATUS=\n", []Field{{"STATUS", ""}}},
		{"X_1=2\nX_1=3", []Field{{"X_1", "2"}, {"X_1", "3"}}},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "\n", "READY", "=1", "ready=1", "RE ADY=1", "A=\x00", string(make([]byte, MaxDatagram+1))} {
		if got, err := Parse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.20q) = %v, %v; want ErrMalformed", bad, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	b, err := Format([]Field{{"READY", "1"}, {"STATUS", "ok"}})
	if err != nil || string(b) != "READY=1\nSTATUS=ok\n" {
		t.Errorf("Format = %q, %v", b, err)
	}
	for _, bad := range [][]Field{{{"", "1"}}, {{"A", "x\ny"}}, {{"a", "1"}}} {
		if _, err := Format(bad); err == nil {
			t.Errorf("Format(%v) = nil error; want error", bad)
		}
	}
}

// FuzzParse checks that Parse never panics, and that whatever it accepts
// survives a Format/Parse round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte("READY=1\nSTATUS=ok\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := Parse(b)
		if err != nil {
			return
		}
		out, err := Format(fields)
		if err != nil {
			t.Fatalf("Format(Parse(%q)) = %v", b, err)
		}
		again, err := Parse(out)
		if err != nil || !reflect.DeepEqual(again, fields) {
			t.Fatalf("round trip of %q: %v, %v; want %v", b, again, err, fields)
		}
	})
}
