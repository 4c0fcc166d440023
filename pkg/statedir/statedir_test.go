package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain doubles as a helper process: with ZD_STATEDIR_CHILD=ensure it runs
// Ensure on its argument and prints the outcome, so tests can check the
// refusals that depend on the calling user.
func TestMain(m *testing.M) {
	if os.Getenv("ZD_STATEDIR_CHILD") == "ensure" {
		if err := Ensure(os.Args[len(os.Args)-1]); err != nil {
			var se *Error
			if errors.As(err, &se) {
				os.Stdout.WriteString("message: " + se.Message + "\nhint: " + se.Hint + "\n")
			} else {
				os.Stdout.WriteString("plain: " + err.Error() + "\n")
			}
			os.Exit(1)
		}
		os.Stdout.WriteString("ok\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestResolve(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tmp := "/tmp"
	tests := []struct {
		flag, name string
		env        map[string]string
		uid        int
		want       string
	}{
		{"/srv/zd", "web", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/srv/zd"},
		{"", "web", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/zd/web"},
		{"", "", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/zd/default"},
		{"", "web", nil, 0, "/run/zd/web"},
		{"", "web", nil, 1000, filepath.Join(tmp, "zd-1000", "web")},
		{"", "web", map[string]string{"XDG_RUNTIME_DIR": "relative"}, 1000, filepath.Join(tmp, "zd-1000", "web")},
		{"", "a/b", nil, 0, "/run/zd/a_b"},
		{"", "..", nil, 0, "/run/zd/default"},
		{"", ".", nil, 0, "/run/zd/default"},
	}
	for _, tt := range tests {
		got := resolve(tt.flag, tt.name, env(tt.env), tt.uid)
		if got != tt.want {
			t.Errorf("resolve(%q, %q, %v, %d) = %q; want %q", tt.flag, tt.name, tt.env, tt.uid, got, tt.want)
		}
	}
	if got := Resolve("", "x", env(map[string]string{"XDG_RUNTIME_DIR": "/r"})); got != "/r/zd/x" {
		t.Errorf("Resolve = %q; want /r/zd/x", got)
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"", "web", "web-1.blue", "a b"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v; want nil", ok, err)
		}
	}
	for _, bad := range []string{".", "..", "a/b", "/", "a\x00b"} {
		err := CheckName(bad)
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(se.Message, "invalid service name") || se.Hint == "" {
			t.Errorf("CheckName(%q) = %v; want *Error with message and hint", bad, err)
		}
	}
}

func wantRefusal(t *testing.T, err error, msg, hint string) {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("Ensure = %v (%T); want *Error", err, err)
	}
	if !strings.Contains(se.Message, msg) {
		t.Errorf("Ensure message = %q; want it to contain %q", se.Message, msg)
	}
	if !strings.Contains(se.Hint, hint) {
		t.Errorf("Ensure hint = %q; want it to contain %q", se.Hint, hint)
	}
}

func TestEnsureCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "web")
	if err := Ensure(dir); err != nil {
		t.Fatalf("Ensure(%s) = %v", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("created %s with mode %v; want drwx------", dir, fi.Mode())
	}
	// A second call on the existing directory succeeds.
	if err := Ensure(dir); err != nil {
		t.Errorf("Ensure(existing) = %v", err)
	}
}

func TestEnsureRefusesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, Ensure(p), "exists and is not a directory", "remove it or choose another --state-dir")
	wantRefusal(t, Ensure(filepath.Join(p, "sub")), "a parent is not a directory", "choose another --state-dir")
}

func TestEnsureRefusesUnsafeParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	base := t.TempDir()
	theirs := filepath.Join(base, "zd-1000")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(theirs, "web")
	wantRefusal(t, Ensure(dir), "is inside "+theirs+", which uid 65534 owns: that user could replace it", "inside a directory of your own")

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	wantRefusal(t, Ensure(filepath.Join(open, "web")), "which others may write to (mode 0777, no sticky bit)", "chmod go-w "+open)

	// A sticky world-writable parent, like /tmp, is fine.
	sticky := filepath.Join(base, "tmp")
	if err := os.Mkdir(sticky, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(sticky, 0o777|os.ModeSticky)
	if err := Ensure(filepath.Join(sticky, "zd-0")); err != nil {
		t.Errorf("Ensure under a sticky dir = %v; want nil", err)
	}
}

func TestEnsureRefusesWritableByOthers(t *testing.T) {
	for _, mode := range []os.FileMode{0o770, 0o707, 0o777} {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, Ensure(dir), fmt.Sprintf("is group- or world-writable (mode %#o)", uint32(mode)), "chmod 0700 "+dir)
	}
}

func TestEnsureRefusesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, Ensure(dir), "is owned by uid 65534, not by us (uid 0)", "run as the owner")
}

// openTempDir returns a temporary directory that other users can traverse.
func openTempDir(t *testing.T) string {
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// runEnsureAs runs Ensure(dir) in a child process as uid/gid 65534.
func runEnsureAs(t *testing.T, dir string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", exe, "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), "ZD_STATEDIR_CHILD=ensure")
	out, err := cmd.Output()
	return string(out), err
}

func TestEnsureRefusesNotWritable(t *testing.T) {
	base := openTempDir(t)
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Skipf("chown: %v", err)
	}
	out, err := runEnsureAs(t, dir)
	if err == nil {
		t.Fatalf("Ensure as uid 65534 on a 0500 dir succeeded: %s", out)
	}
	for _, want := range []string{"message: state directory " + dir + " is not writable", "hint: chmod u+rwx " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("child output %q; want it to contain %q", out, want)
		}
	}
}

func TestEnsureCannotCreate(t *testing.T) {
	base := openTempDir(t)
	out, err := runEnsureAs(t, filepath.Join(base, "x", "y"))
	if err == nil {
		t.Fatalf("Ensure as uid 65534 under a root-owned dir succeeded: %s", out)
	}
	if !strings.Contains(out, "cannot create it") || !strings.Contains(out, "check the permissions of its parent") {
		t.Errorf("child output %q; want a cannot-create refusal with hint", out)
	}
}

func TestEnsureCannotReach(t *testing.T) {
	priv := filepath.Join(openTempDir(t), "private")
	if err := os.Mkdir(priv, 0o700); err != nil { // root's: uid 65534 cannot look inside
		t.Fatal(err)
	}
	out, err := runEnsureAs(t, filepath.Join(priv, "x"))
	if err == nil {
		t.Fatalf("Ensure as uid 65534 inside a private dir succeeded: %s", out)
	}
	if !strings.Contains(out, "cannot reach it") || !strings.Contains(out, "check the permissions of its parents") {
		t.Errorf("child output %q; want a cannot-reach refusal with hint", out)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer", ""} {
		if err := WriteFileAtomic(p, []byte(content), 0o640); err != nil {
			t.Fatalf("WriteFileAtomic: %v", err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("ReadFile = %q, %v; want %q", b, err, content)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("mode = %v; want 0640", fi.Mode())
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries; want only the file (no temp files left)", len(ents))
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing dir = nil; want error")
	}
}

func TestPID(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, RunPID)
	if _, err := ReadPID(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPID(missing) = %v; want fs.ErrNotExist", err)
	}
	if err := WritePID(p, 4242); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPID(p); pid != 4242 || err != nil {
		t.Errorf("ReadPID = %d, %v; want 4242, nil", pid, err)
	}
	if err := WritePID(p, 0); err == nil {
		t.Error("WritePID(0) = nil; want error")
	}
	for _, bad := range []string{"", "abc", "-3", "0", "12 13"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPID(p); err == nil || !strings.Contains(err.Error(), "is not a pid") {
			t.Errorf("ReadPID(%q) = %v; want 'is not a pid'", bad, err)
		}
	}
	os.WriteFile(p, []byte(" 77 \n"), 0o600)
	if pid, err := ReadPID(p); pid != 77 || err != nil {
		t.Errorf("ReadPID(' 77 ') = %d, %v", pid, err)
	}
}
