package proxy

import "testing"

func TestParseBackend(t *testing.T) {
	good := map[string]string{
		"unix:///run/w1.sock": "unix:///run/w1.sock",
		"unix:/run/w1.sock":   "unix:///run/w1.sock",
		"/run/w1.sock":        "unix:///run/w1.sock",
		"tcp://127.0.0.1:80":  "tcp://127.0.0.1:80",
		"127.0.0.1:9000":      "tcp://127.0.0.1:9000",
		":9000":               "tcp://127.0.0.1:9000",
		"http://[::1]:8080/":  "tcp://[::1]:8080",
	}
	for in, want := range good {
		if _, _, id, err := ParseBackend(in); err != nil || id != want {
			t.Errorf("ParseBackend(%q) = %q, %v; want %q", in, id, err, want)
		}
	}
	for _, in := range []string{"", "ftp://nope", "tcp://host", "host:http", "unix://relative.sock", "tcp://h:0", "tcp://h:70000"} {
		if _, _, id, err := ParseBackend(in); err == nil {
			t.Errorf("ParseBackend(%q) = %q, nil; want an error", in, id)
		}
	}
}

func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"unix:///a.sock", "tcp://127.0.0.1:1", ":1", "http://x:2/", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, a, id, err := ParseBackend(s)
		if err != nil {
			return
		}
		// Canonical ids parse to themselves.
		n2, a2, id2, err := ParseBackend(id)
		if err != nil || n2 != n || a2 != a || id2 != id {
			t.Fatalf("ParseBackend(%q) = %q; reparsed %q %q %q %v", s, id, n2, a2, id2, err)
		}
	})
}

func TestRemoteIP(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:5000", "127.0.0.1", true},
		{"[::1]:80", "::1", true},
		{"[fe80::1%eth0]:80", "fe80::1%eth0", true},
		{"", "", false},
		{"@", "", false},
		{"127.0.0.1", "", false},
		{"::1", "", false},
		{":80", "", false},
		{"[]:80", "", false},
		{"[::1:80", "", false},
	} {
		got, ok := remoteIP(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("remoteIP(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
