package listenfd

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseEnv(t *testing.T) {
	const me = 4242
	tests := []struct {
		env     map[string]string
		n       int
		names   []string
		wantErr string
	}{
		{env: nil},
		{env: map[string]string{"LISTEN_FDS": "2"}},                    // no LISTEN_PID: not ours
		{env: map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "2"}}, // another process's
		{env: map[string]string{"LISTEN_PID": "4242"}},                 // no LISTEN_FDS
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2"}, n: 2, names: []string{"unknown", "unknown"}},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}, n: 1, names: []string{"web"}},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a::c"}, n: 3, names: []string{"a", "", "c"}},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": ""}, n: 2, names: []string{"unknown", "unknown"}},
		{env: map[string]string{"LISTEN_PID": "x", "LISTEN_FDS": "2"}, wantErr: `LISTEN_PID="x" is not a pid`},
		{env: map[string]string{"LISTEN_PID": "-4", "LISTEN_FDS": "2"}, wantErr: `LISTEN_PID="-4" is not a pid`},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "0"}}, // as sd_listen_fds: none
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "-1"}, wantErr: `LISTEN_FDS="-1" is not a count from 0`},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "two"}, wantErr: `LISTEN_FDS="two" is not a count`},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "99999999"}, wantErr: "is not a count from 0 to 1048576"},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a"}, wantErr: "LISTEN_FDNAMES has 1 names for LISTEN_FDS=2"},
		{env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"}, wantErr: "LISTEN_FDNAMES has 2 names for LISTEN_FDS=1"},
	}
	for _, tt := range tests {
		n, names, err := ParseEnv(mapEnv(tt.env), me)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEnv(%v) error %v; want %q", tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || n != tt.n || !reflect.DeepEqual(names, tt.names) {
			t.Errorf("ParseEnv(%v) = %d, %q, %v; want %d, %q, nil", tt.env, n, names, err, tt.n, tt.names)
		}
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add("4242", "2", "a:b")
	f.Add("4242", "1", "")
	f.Add("1", "1", "x")
	f.Fuzz(func(t *testing.T, pid, fds, names string) {
		env := map[string]string{"LISTEN_PID": pid, "LISTEN_FDS": fds, "LISTEN_FDNAMES": names}
		n, got, err := ParseEnv(mapEnv(env), 4242)
		if err != nil {
			if n != 0 || got != nil {
				t.Fatalf("ParseEnv error %v but n=%d names=%q", err, n, got)
			}
			return
		}
		if n < 0 || n > MaxFDs || len(got) != n {
			t.Fatalf("ParseEnv(%q,%q,%q) = %d, %d names", pid, fds, names, n, len(got))
		}
		if n == 0 {
			return
		}
		// What Env produces for those names parses back to the same.
		back := map[string]string{"LISTEN_PID": "4242"}
		for _, kv := range Env(got) {
			k, v, _ := strings.Cut(kv, "=")
			back[k] = v
		}
		n2, got2, err := ParseEnv(mapEnv(back), 4242)
		if err != nil || n2 != n {
			t.Fatalf("ParseEnv(Env(%q)) = %d, %v", got, n2, err)
		}
		for i := range got {
			want := got[i]
			if want == "" {
				want = UnknownName
			}
			if got2[i] != want {
				t.Fatalf("name %d: %q after round trip; want %q", i, got2[i], want)
			}
		}
	})
}

func TestEnv(t *testing.T) {
	if got := Env(nil); got != nil {
		t.Errorf("Env(nil) = %q; want nil", got)
	}
	got := Env([]string{"web", "", "ctl"})
	want := []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=web:unknown:ctl"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Env = %q; want %q", got, want)
	}
}

// Inherited must not touch descriptors when the variables are not ours,
// and must unset them when asked, whatever the outcome.
func TestInheritedNotOurs(t *testing.T) {
	for _, pid := range []string{"1", ""} {
		t.Setenv("LISTEN_PID", pid)
		t.Setenv("LISTEN_FDS", "2")
		t.Setenv("LISTEN_FDNAMES", "a:b")
		files, err := Inherited(true)
		if files != nil || err != nil {
			t.Errorf("Inherited with LISTEN_PID=%q = %v, %v; want nil, nil", pid, files, err)
		}
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			if _, set := os.LookupEnv(k); set {
				t.Errorf("%s still set after Inherited(true)", k)
			}
		}
	}
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "1")
	if _, err := Inherited(false); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("LISTEN_FDS") != "1" {
		t.Errorf("Inherited(false) unset LISTEN_FDS")
	}
}

func TestInheritedMalformed(t *testing.T) {
	t.Setenv("LISTEN_PID", itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_FDNAMES", "only-one")
	files, err := Inherited(true)
	if err == nil || files != nil || !strings.Contains(err.Error(), "1 names for LISTEN_FDS=2") {
		t.Errorf("Inherited = %v, %v; want the name count error", files, err)
	}
	if _, set := os.LookupEnv("LISTEN_FDS"); set {
		t.Errorf("LISTEN_FDS still set after a failed Inherited(true)")
	}
}
