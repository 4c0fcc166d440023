package control

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runClientAs calls "echo" on path from a child process with the given
// setpriv arguments, and returns what the child printed.
func runClientAs(t *testing.T, path string, privArgs ...string) string {
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
	args := append(privArgs, exe, "-test.run=^$", path)
	cmd := exec.Command(setpriv, args...)
	cmd.Env = append(os.Environ(), "ZD_CONTROL_CHILD=call")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func TestPeerCredentials(t *testing.T) {
	dir := sockDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.sock")
	srv, err := Listen(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(context.Background(), testHandler)
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}

	// The socket file (0600) keeps uid 65534 out before SO_PEERCRED.
	out := runClientAs(t, path, nobody...)
	if out != "code permission-denied: connect "+path+": permission denied" {
		t.Errorf("child through a 0600 socket: %q; want permission-denied at connect", out)
	}
	// With the file opened up, SO_PEERCRED refuses it.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	out = runClientAs(t, path, nobody...)
	if out != "code permission-denied: uid 65534 may not use "+path {
		t.Errorf("child with another uid: %q; want refused by SO_PEERCRED", out)
	}
	// The server keeps serving its own user.
	var s string
	if err := Call(testCtx(t), path, "echo", "me", &s); err != nil || s != "me" {
		t.Errorf("Call after a refused peer = %q, %v", s, err)
	}

	// AllowGIDs lets a group in, by primary or supplementary gid.
	p2 := filepath.Join(dir, "g.sock")
	s2, err := Listen(p2, Options{AllowGIDs: []int{4242}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	go s2.Serve(context.Background(), testHandler)
	os.Chmod(p2, 0o666)
	if out := runClientAs(t, p2, "--reuid=65534", "--regid=4242", "--clear-groups"); out != "ok hi" {
		t.Errorf("child with allowed primary gid: %q; want ok hi", out)
	}
	if out := runClientAs(t, p2, "--reuid=65534", "--regid=65534", "--groups=4242"); out != "ok hi" {
		t.Errorf("child with allowed supplementary gid: %q; want ok hi", out)
	}
	if out := runClientAs(t, p2, nobody...); !strings.HasPrefix(out, "code permission-denied: uid 65534 may not use") {
		t.Errorf("child without the gid: %q; want refused", out)
	}
}
