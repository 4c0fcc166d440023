package sdnotify

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// notifyFrom runs the test binary as a notifying child, optionally as
// another user through setpriv, and returns its pid.
func notifyFrom(t *testing.T, socket, state string, privArgs ...string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if len(privArgs) > 0 {
		if os.Geteuid() != 0 {
			t.Skip("needs root to switch user")
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("setpriv not installed")
		}
		cmd = exec.Command(setpriv, append(privArgs, exe, "-test.run=^$")...)
	} else {
		cmd = exec.Command(exe, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), "ZD_SDNOTIFY_CHILD=notify", "NOTIFY_SOCKET="+socket, "ZD_SDNOTIFY_STATE="+state)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	return cmd.Process.Pid
}

// TestChildCredentials: the message carries the child's pid, not ours, as
// a supervisor needs to tell its workers apart.
func TestChildCredentials(t *testing.T) {
	r, err := Listen(filepath.Join(sockDir(t), "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid := notifyFrom(t, r.Path(), "READY=1\nSTATUS=child")
	m := receive(t, r)
	if m.PID != pid || !m.Is(Ready) {
		t.Errorf("message %q from pid %d; want READY=1 from the child, pid %d", m.Raw, m.PID, pid)
	}
}

// TestOtherUser: a worker running as another user reaches an abstract
// socket, and a filesystem socket once Chown'd to it in a searchable
// directory; the uid it sent with is reported.
func TestOtherUser(t *testing.T) {
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	abs := "@zd-test-other-" + filepath.Base(sockDir(t))
	r, err := Listen(abs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	notifyFrom(t, abs, "READY=1", nobody...)
	if m := receive(t, r); m.UID != 65534 || m.GID != 65534 || !m.Is(Ready) {
		t.Errorf("abstract: message %q from uid %d gid %d; want READY=1 from 65534", m.Raw, m.UID, m.GID)
	}

	dir := sockDir(t)
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	r2, err := Listen(filepath.Join(dir, "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := r2.Chown(65534, -1); err != nil {
		t.Fatal(err)
	}
	notifyFrom(t, r2.Path(), "STOPPING=1", nobody...)
	if m := receive(t, r2); m.UID != 65534 || !m.Is(Stopping) {
		t.Errorf("chowned: message %q from uid %d; want STOPPING=1 from 65534", m.Raw, m.UID)
	}
}

// TestReceiveClosesFDs: descriptors sent along a notification (FDSTORE=1)
// are closed, not leaked into the supervisor.
func TestReceiveClosesFDs(t *testing.T) {
	r, err := Listen(filepath.Join(sockDir(t), "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@", Net: "unixgram"}) // autobind
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := &net.UnixAddr{Name: r.Path(), Net: "unixgram"}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := countFDs(t)
	fds := make([]int, 10)
	for i := range fds {
		fds[i] = int(f.Fd())
	}
	if _, _, err := c.WriteMsgUnix([]byte("FDSTORE=1\nFDNAME=x"), unix.UnixRights(fds...), to); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, r); !m.Is("FDSTORE") {
		t.Errorf("got %q; want FDSTORE=1", m.Raw)
	}
	if after := countFDs(t); after != before {
		t.Errorf("open descriptors %d before, %d after receiving 10; want no change", before, after)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}
