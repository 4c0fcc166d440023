package queue

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParsePriority(t *testing.T) {
	def := DefaultPriorityHeaders()
	tests := []struct {
		name    string
		headers map[string][]string
		names   []string
		want    int
	}{
		{"none", nil, def, 0},
		{"integer", map[string][]string{"X-Priority": {"3"}}, def, 3},
		{"negative", map[string][]string{"X-Priority": {"-4"}}, def, -4},
		{"plus sign and spaces", map[string][]string{"X-Priority": {"  +2 "}}, def, 2},
		{"clamped high", map[string][]string{"X-Priority": {"500"}}, def, NumericMax},
		{"clamped low", map[string][]string{"X-Priority": {"-500"}}, def, NumericMin},
		{"out of int64 range", map[string][]string{"X-Priority": {"99999999999999999999999"}}, def, NumericMax},
		{"malformed ignored", map[string][]string{"X-Priority": {"high"}}, def, 0},
		{"float ignored", map[string][]string{"X-Priority": {"1.5"}}, def, 0},
		{"urgent true", map[string][]string{"X-Urgent": {"true"}}, def, 10},
		{"urgent 1 upper", map[string][]string{"X-Urgent": {"YES"}}, def, 10},
		{"urgent false", map[string][]string{"X-Urgent": {"false"}, "X-Priority": {"-1"}}, def, -1},
		{"urgent garbage", map[string][]string{"X-Urgent": {"maybe"}}, def, 0},
		{"critical beats urgent and priority", map[string][]string{"X-Priority": {"9"}, "X-Urgent": {"on"}, "X-Critical": {"1"}}, def, 20},
		{"origin example", map[string][]string{"X-Priority": {"1"}, "X-Urgent": {"true"}}, def, 10},
		{"highest value of a repeated header", map[string][]string{"X-Priority": {"2", "7", "bad"}}, def, 7},
		{"comma list", map[string][]string{"X-Priority": {"2, 8 ,x"}}, def, 8},
		{"custom names", map[string][]string{"Prio": {"4"}, "Vip": {"true"}}, []string{"prio", "vip"}, 10},
		{"names not configured are ignored", map[string][]string{"X-Urgent": {"true"}}, []string{"x-priority"}, 0},
		{"no names", map[string][]string{"X-Priority": {"5"}}, nil, 0},
		{"many flags clamp", map[string][]string{"H9": {"true"}}, []string{"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"}, MaxPriority},
	}
	for _, tc := range tests {
		h := http.Header(tc.headers)
		if got := ParsePriority(h, tc.names); got != tc.want {
			t.Errorf("%s: ParsePriority(%v, %v) = %d; want %d", tc.name, tc.headers, tc.names, got, tc.want)
		}
	}
}

func FuzzParsePriority(f *testing.F) {
	f.Add("1", "true", "0")
	f.Add("-3", "no", "yes")
	f.Add("99999999999999999999", "", "")
	f.Add(" 4 ,5", "TRUE,false", "on")
	f.Fuzz(func(t *testing.T, prio, urgent, critical string) {
		h := http.Header{}
		h.Set("X-Priority", prio)
		h.Set("X-Urgent", urgent)
		h.Set("X-Critical", critical)
		got := ParsePriority(h, DefaultPriorityHeaders())
		valid := got == DefaultPriority || got == FlagStep || got == 2*FlagStep ||
			got >= NumericMin && got <= NumericMax
		if !valid {
			t.Fatalf("ParsePriority(%q, %q, %q) = %d; outside the rule", prio, urgent, critical, got)
		}
		if again := ParsePriority(h, DefaultPriorityHeaders()); again != got {
			t.Fatalf("ParsePriority not deterministic: %d then %d", got, again)
		}
		// A true critical flag always wins.
		h.Set("X-Critical", "true")
		if p := ParsePriority(h, DefaultPriorityHeaders()); p != 2*FlagStep {
			t.Fatalf("with x-critical: true, ParsePriority = %d; want %d", p, 2*FlagStep)
		}
	})
}

func TestParseOverflow(t *testing.T) {
	for in, want := range map[string]Overflow{"reject": Reject, "oldest": Oldest, " Compress ": Compress, "REJECT": Reject} {
		if got, err := ParseOverflow(in); err != nil || got != want {
			t.Errorf("ParseOverflow(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got, _ := ParseOverflow(want.String()); got != want {
			t.Errorf("ParseOverflow(%v.String()) = %v; want round trip", want, got)
		}
	}
	for _, in := range []string{"", "evict", "drop-oldest"} {
		_, err := ParseOverflow(in)
		if err == nil || !strings.Contains(err.Error(), "reject, oldest, compress") {
			t.Errorf("ParseOverflow(%q) = %v; want an error listing reject, oldest, compress", in, err)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		l    Limits
		want int
	}{
		{Limits{}, 5},
		{Limits{MaxAge: 30 * time.Second}, 30},
		{Limits{MaxAge: 1500 * time.Millisecond}, 2},
		{Limits{MaxAge: 30 * time.Second, RetryAfter: 3 * time.Second}, 3},
		{Limits{RetryAfter: time.Millisecond}, 1},
	}
	for _, tc := range tests {
		if got := tc.l.RetryAfterSeconds(); got != tc.want {
			t.Errorf("%+v.RetryAfterSeconds() = %d; want %d", tc.l, got, tc.want)
		}
		b := New(tc.l)
		if got := b.RetryAfter(); got != tc.want {
			t.Errorf("New(%+v).RetryAfter() = %d; want %d", tc.l, got, tc.want)
		}
		b.Close()
	}
}

func TestLimitsNormalize(t *testing.T) {
	l := Limits{MaxBytes: -1, MaxCount: -1, MaxAge: -1, Overflow: 42}.normalize()
	if l.MaxBytes != 0 || l.MaxCount != 0 || l.MaxAge != 0 || l.Overflow != Reject ||
		l.ReplayConcurrency != DefaultReplayConcurrency || l.EntryOverhead != DefaultEntryOverhead {
		t.Errorf("normalize() = %+v", l)
	}
	if d := DefaultLimits(); d.MaxBytes != 10<<20 || d.MaxCount != 1000 || d.MaxAge != 30*time.Second {
		t.Errorf("DefaultLimits() = %+v; want the origin's 10 MiB, 1000, 30s", d)
	}
}

func TestHeaderValuesMatchesNetHTTP(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"X-Priority", "Content-Type", "X-Very-Long-Header-Name-That-Goes-On-And-On-And-On-Past-Sixty-Four-Bytes", "Weird Key"} {
		h[k] = []string{k}
	}
	for _, name := range []string{"x-priority", "X-PRIORITY", "content-type", "cONTENT-tYPE", "x-very-long-header-name-that-goes-on-and-on-and-on-past-sixty-four-bytes",
		"Weird Key", "weird key", "-x", "x--y", "", "x_priority", "ü-x"} {
		got, want := headerValues(h, name), h.Values(name)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("headerValues(%q) = %v; want %v (as http.Header.Values)", name, got, want)
		}
	}
}

// FuzzHeaderValues checks the allocation-free lookup against net/http's.
func FuzzHeaderValues(f *testing.F) {
	f.Add("x-priority", "X-Priority")
	f.Add("X-URGENT", "x-urgent")
	f.Add("a b", "A b")
	f.Fuzz(func(t *testing.T, name, stored string) {
		h := http.Header{}
		h.Add(stored, "v1")
		h[stored] = append(h[stored], "v2")
		if got, want := headerValues(h, name), h.Values(name); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("headerValues(%q) with key %q = %v; want %v", name, stored, got, want)
		}
	})
}
