package zdhandoff

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const nobody = "65534"

// A peer running as another uid is refused with a clear message on both
// sides, and nothing is handed over; --allow-gid lets its group in.
func TestPeerOtherUIDRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the client as another uid (setpriv --reuid)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run the client as another uid")
	}
	if out, err := exec.Command(setpriv, "--reuid="+nobody, "--regid="+nobody, "--clear-groups", "true").CombinedOutput(); err != nil {
		t.Skipf("setpriv cannot switch to uid %s here: %v %s", nobody, err, out)
	}
	dir, err := os.MkdirTemp("", "zdpeer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The other uid must reach the directory and run the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "zd-handoff")
	copyExe(t, bin)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	for _, tc := range []struct {
		name    string
		allow   []string
		refused bool
	}{
		{"same-uid-only", nil, true},
		{"allow-gid", []string{"--allow-gid", nobody}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(dir, tc.name+".sock")
			var srvLog bytes.Buffer
			args := append([]string{"serve", "--socket", sock, "--fd", "3=web"}, tc.allow...)
			srv := exec.Command(bin, args...)
			srv.Env = append(os.Environ(), "ZDHANDOFF_TEST_MAIN=1")
			srv.ExtraFiles = []*os.File{lf}
			srv.Stderr = &srvLog
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				srv.Process.Signal(syscall.SIGTERM)
				srv.Wait()
			}()
			waitSocket(t, sock)
			// Past the 0600 file mode, so that the peer check is what decides.
			if err := os.Chmod(sock, 0o666); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cl := exec.Command(setpriv, "--reuid="+nobody, "--regid="+nobody, "--clear-groups", "--",
				bin, "take", "--socket", sock, "--timeout", "10s", "--", "/bin/sh", "-c", "echo TOOK $LISTEN_FDS $LISTEN_FDNAMES")
			cl.Env = append(os.Environ(), "ZDHANDOFF_TEST_MAIN=1")
			cl.Stdout, cl.Stderr = &stdout, &stderr
			err := cl.Run()
			if !tc.refused {
				if err != nil || strings.TrimSpace(stdout.String()) != "TOOK 1 web" {
					t.Fatalf("take as uid %s with --allow-gid: %v, stdout %q, stderr %q", nobody, err, stdout.String(), stderr.String())
				}
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("take as uid %s: %v; want exit status 1", nobody, err)
			}
			if strings.Contains(stdout.String(), "TOOK") {
				t.Errorf("the refused taker ran its command: %q", stdout.String())
			}
			for _, want := range []string{"refused by the handoff server", "runs as uid " + nobody, "hint: run as the server's user or root, or start serve with --allow-gid"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("taker's stderr %q; want it to contain %q", stderr.String(), want)
				}
			}
			srv.Process.Signal(syscall.SIGTERM)
			srv.Wait()
			if !strings.Contains(srvLog.String(), "refused peer") || !strings.Contains(srvLog.String(), "uid="+nobody) {
				t.Errorf("server log %q; want the refusal logged with the uid", srvLog.String())
			}
			if strings.Contains(srvLog.String(), "handed over") {
				t.Errorf("server handed fds to a refused peer: %q", srvLog.String())
			}
		})
	}
}

func copyExe(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting after 20s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
