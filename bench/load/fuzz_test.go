package load

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzParseMarks checks ParseMarks never panics, and that what it accepts
// survives a round trip through the format it documents.
func FuzzParseMarks(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		marks, err := ParseMarks(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, m := range marks {
			if m.End.Before(m.Start) {
				t.Fatalf("ParseMarks(%q): window ends before it starts: %v", in, m)
			}
			fmt.Fprintf(&buf, "start %d\nstop %d\n", m.Start.UnixNano(), m.End.UnixNano())
		}
		again, err := ParseMarks(&buf)
		if err != nil || len(again) != len(marks) {
			t.Fatalf("round trip of %q: %d marks, %v; want %d", in, len(again), err, len(marks))
		}
		for i := range marks {
			if !again[i].Start.Equal(marks[i].Start) || !again[i].End.Equal(marks[i].End) {
				t.Fatalf("round trip of %q: mark %d = %v; want %v", in, i, again[i], marks[i])
			}
		}
	})
}
