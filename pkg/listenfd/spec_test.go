package listenfd

import (
	"reflect"
	"strings"
	"testing"
)

func ptr(b bool) *bool { return &b }

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		str  string // String(); "" means same as in
	}{
		{"tcp://127.0.0.1:8080", Spec{Network: "tcp", Address: "127.0.0.1:8080", ReuseAddr: true}, ""},
		{"tcp://:8080", Spec{Network: "tcp", Address: ":8080", ReuseAddr: true}, ""},
		{":8080", Spec{Network: "tcp", Address: ":8080", ReuseAddr: true}, "tcp://:8080"},
		{"127.0.0.1:80", Spec{Network: "tcp", Address: "127.0.0.1:80", ReuseAddr: true}, "tcp://127.0.0.1:80"},
		{"web=[::1]:80", Spec{Name: "web", Network: "tcp", Address: "[::1]:80", ReuseAddr: true}, "web=tcp://[::1]:80"},
		{"web=tcp://localhost:080", Spec{Name: "web", Network: "tcp", Address: "localhost:80", ReuseAddr: true}, "web=tcp://localhost:80"},
		{"tcp4://0.0.0.0:1", Spec{Network: "tcp4", Address: "0.0.0.0:1", ReuseAddr: true}, ""},
		{"tcp6://[::1]:0?v6only=1", Spec{Network: "tcp6", Address: "[::1]:0", ReuseAddr: true, V6Only: ptr(true)}, ""},
		{"tcp://[::]:443?backlog=16&reuseport=1&v6only=0", Spec{Network: "tcp", Address: "[::]:443", Backlog: 16, ReuseAddr: true, ReusePort: true, V6Only: ptr(false)}, ""},
		{"tcp://:80?reuseaddr=0", Spec{Network: "tcp", Address: ":80"}, ""},
		{"tcp://:80?reuseaddr=1", Spec{Network: "tcp", Address: ":80", ReuseAddr: true}, "tcp://:80"},
		{"udp://127.0.0.1:53", Spec{Network: "udp", Address: "127.0.0.1:53"}, ""},
		{"udp4://:53?reuseport=true", Spec{Network: "udp4", Address: ":53", ReusePort: true}, "udp4://:53?reuseport=1"},
		{"udp6://[::1]:53?reuseaddr=1", Spec{Network: "udp6", Address: "[::1]:53", ReuseAddr: true}, ""},
		{"unix:///run/app.sock", Spec{Network: "unix", Address: "/run/app.sock"}, ""},
		{"ctl=unix:///run/app.sock?mode=0660&backlog=4", Spec{Name: "ctl", Network: "unix", Address: "/run/app.sock", Mode: 0o660, Backlog: 4}, "ctl=unix:///run/app.sock?backlog=4&mode=0660"},
		{"unix://@zd-test", Spec{Network: "unix", Address: "@zd-test"}, ""},
		{"unixpacket:///tmp/p.sock", Spec{Network: "unixpacket", Address: "/tmp/p.sock"}, ""},
		{"unixgram://@g", Spec{Network: "unixgram", Address: "@g"}, ""},
		{"a b=tcp://:1", Spec{Name: "a b", Network: "tcp", Address: ":1", ReuseAddr: true}, ""},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if err != nil {
			t.Errorf("ParseSpec(%q) error %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSpec(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if s := got.String(); s != str {
			t.Errorf("ParseSpec(%q).String() = %q; want %q", tt.in, s, str)
		}
		again, err := ParseSpec(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v (round trip)", got.String(), again, err, got)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	long := "unix:///" + strings.Repeat("x", 107)
	tests := []struct{ in, want string }{
		{"", "no scheme://"},
		{"localhost", "no scheme://"},
		{"/run/app.sock", "no scheme://"},
		{"://x", "empty scheme"},
		{"http://:80", `unknown scheme "http"`},
		{"tcp://", "no HOST:PORT after tcp://"},
		{"tcp://localhost", `"localhost" is not HOST:PORT`},
		{"tcp://::1:80", `"::1:80" is not HOST:PORT`},
		{"tcp://:http", `port "http" is not a number`},
		{"tcp://:65536", `port "65536" is not a number from 0 to 65535`},
		{"tcp://:-1", `port "-1" is not a number`},
		{"tcp4://[::1]:80", "tcp4 needs an IPv4 address"},
		{"tcp6://127.0.0.1:80", "tcp6 needs an IPv6 address"},
		{"tcp://[fe80::1%]:80", `host "fe80::1%" is not a valid IPv6 address`},
		{"tcp://a b:80", `host "a b" is not a host name`},
		{"unix://", "no path after unix://"},
		{"unix://run/x.sock", "is not absolute (write unix:///abs/path, three slashes)"},
		{"unix:///run/", "names a directory"},
		{"unix://@", "abstract socket name after @ is empty"},
		{long, "at most 107 fit in sun_path"},
		{"=tcp://:80", "name is empty"},
		{"a:b=tcp://:80", "contains ':', the LISTEN_FDNAMES separator"},
		{"a=b=tcp://:80", `name "a=b" contains '='`},
		{"tcp://:80?", `option "" is not KEY=VALUE`},
		{"tcp://:80?backlog", `option "backlog" is not KEY=VALUE`},
		{"tcp://:80?backlog=0", `option backlog="0" is not a number from 1`},
		{"tcp://:80?backlog=x", `option backlog="x" is not a number`},
		{"tcp://:80?backlog=1&backlog=2", "option backlog given twice"},
		{"udp://:53?backlog=1", "option backlog is for stream sockets, not udp"},
		{"unixgram:///x?backlog=1", "option backlog is for stream sockets, not unixgram"},
		{"tcp://:80?mode=0600", "option mode is for unix socket files only"},
		{"unix://@x?mode=0600", "option mode is for unix socket files only"},
		{"unix:///x?mode=999", `option mode="999" is not octal`},
		{"unix:///x?mode=01777", `option mode="01777" is not octal`},
		{"unix:///x?reuseport=1", "option reuseport is for TCP and UDP, not unix"},
		{"tcp4://:80?v6only=1", "option v6only is for tcp, tcp6, udp and udp6, not tcp4"},
		{"tcp://:80?v6only=maybe", `option v6only="maybe" is not 0 or 1`},
		{"tcp://:80?frob=1", `unknown option "frob" (known: backlog, mode, reuseaddr, reuseport, v6only)`},
	}
	for _, tt := range tests {
		_, err := ParseSpec(tt.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) = nil error; want %q", tt.in, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSpec(%q) error %q; want it to contain %q", tt.in, err, tt.want)
		}
		if !strings.Contains(err.Error(), "want [NAME=]tcp") {
			t.Errorf("ParseSpec(%q) error %q does not quote the syntax", tt.in, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"web", "a b", "x/y", strings.Repeat("n", 255), "~!@#"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "a:b", "tab\t", "é", strings.Repeat("n", 256), "\x7f"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) = nil; want an error", bad)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"tcp://:80", "web=tcp6://[::1]:0?v6only=1&backlog=9", "unix:///a?mode=0600", "unix://@x", "udp://1.2.3.4:5?reuseport=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			return
		}
		again, err := ParseSpec(sp.String())
		if err != nil {
			t.Fatalf("ParseSpec(%q) ok but its String %q fails: %v", s, sp.String(), err)
		}
		if !reflect.DeepEqual(again, sp) {
			t.Fatalf("ParseSpec(%q) = %+v; round trip through %q gives %+v", s, sp, sp.String(), again)
		}
		if again.String() != sp.String() {
			t.Fatalf("String not stable: %q then %q", sp.String(), again.String())
		}
	})
}
