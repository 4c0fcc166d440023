package zdhandoff

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
	"github.com/zdtools/zd/pkg/handoff"
)

// beginRelease is a taker with --release up to its exec status; it
// returns the connection the successor would inherit.
func beginRelease(ctx context.Context, t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	var c *net.UnixConn
	// The previous release's handler may not have finished yet.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c = dialSock(t, sock)
		if err := fdpass.WriteMsg(ctx, c, handoff.Request{V: handoff.Version, Op: handoff.OpTake, Release: true}); err != nil {
			t.Fatal(err)
		}
		var rep handoff.Reply
		err := fdpass.ReadMsg(ctx, c, handoff.MaxMsg, &rep)
		if err == nil && rep.OK {
			break
		}
		if err != nil || !strings.Contains(rep.Error.Message, "in progress") || time.Now().After(deadline) {
			t.Fatalf("release reply = %+v, %v", rep, err)
		}
	}
	fds, err := fdpass.Recv(ctx, c, 4)
	if err != nil {
		t.Fatal(err)
	}
	fdpass.CloseAll(fds)
	if err := fdpass.WriteMsg(ctx, c, handoff.Status{V: handoff.Version, Op: handoff.OpExec}); err != nil {
		t.Fatal(err)
	}
	return c
}

func lsPID(ctx context.Context, t *testing.T, sock string) int {
	t.Helper()
	pid, err := tryLs(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// tryLs asks the server on sock for its pid.
func tryLs(ctx context.Context, sock string) (int, error) {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	c := nc.(*net.UnixConn)
	fdpass.WriteMsg(ctx, c, handoff.Request{V: handoff.BaseVersion, Op: handoff.OpLs})
	var rep handoff.Reply
	if err := fdpass.ReadMsg(ctx, c, handoff.MaxMsg, &rep); err != nil || !rep.OK {
		return 0, fmt.Errorf("ls reply = %+v, %v", rep, err)
	}
	return rep.PID, nil
}

// A successor that claims to be ready but does not answer where it says,
// or that would serve another --socket, is told to abort; the server goes
// on serving. While one release is pending, another is refused.
func TestReleaseUnprovenSuccessor(t *testing.T) {
	sock, _ := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pid := lsPID(ctx, t, sock)

	for _, tc := range []struct {
		name  string
		ready handoff.Status
		want  string
	}{
		{"silent", handoff.Status{V: handoff.Version, Op: handoff.OpReady, PID: 1, Path: sock + ".nobody", Socket: handoff.AbsPath(sock)}, "its socket did not answer"},
		{"elsewhere", handoff.Status{V: handoff.Version, Op: handoff.OpReady, PID: 1, Path: "/tmp/x.sock", Socket: handoff.AbsPath(sock)}, "answering at /tmp/x.sock"},
		{"other-socket", handoff.Status{V: handoff.Version, Op: handoff.OpReady, PID: 1, Path: sock, Socket: "/elsewhere/h.sock"}, "it would serve on /elsewhere/h.sock"},
		{"wrong-pid", handoff.Status{V: handoff.Version, Op: handoff.OpReady, PID: 1, Path: sock, Socket: handoff.AbsPath(sock)}, "is served by pid"},
		{"out-of-turn", handoff.Status{V: handoff.Version, Op: handoff.OpPublished, PID: 1}, `expected a ready status, got "published"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := beginRelease(ctx, t, sock)
			// One release at a time.
			o := dialSock(t, sock)
			fdpass.WriteMsg(ctx, o, handoff.Request{V: handoff.Version, Op: handoff.OpTake, Release: true})
			var rep handoff.Reply
			if err := fdpass.ReadMsg(ctx, o, handoff.MaxMsg, &rep); err != nil || rep.OK || !strings.Contains(rep.Error.Message, "another take --release is in progress") {
				t.Errorf("second release = %+v, %v; want a refusal", rep, err)
			}
			if err := fdpass.WriteMsg(ctx, c, tc.ready); err != nil {
				t.Fatal(err)
			}
			var st handoff.Status
			if err := fdpass.ReadMsg(ctx, c, handoff.MaxMsg, &st); err != nil || st.Op != handoff.OpAbort || !strings.Contains(st.Error, tc.want) {
				t.Errorf("answer to %+v = %+v, %v; want abort saying %q", tc.ready, st, err, tc.want)
			}
			if got := lsPID(ctx, t, sock); got != pid {
				t.Errorf("after the aborted release ls answers from pid %d; want the server, %d", got, pid)
			}
		})
	}
}

// A successor whose predecessor dies (KILL) while it waits for its child
// to be ready takes the handoff path over at once: someone must serve it.
func TestReleasePredecessorDies(t *testing.T) {
	sock, _ := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := lsPID(ctx, t, sock)
	self, _ := os.Executable()
	// --notify and a child that never sends READY=1: the successor waits.
	tk := exec.Command(self, "take", "--socket", sock, "--release", "--",
		self, "serve", "--socket", sock, "--notify", "--grace", "5s", "--", "sleep", "60")
	tk.Env = append(os.Environ(), "ZDHANDOFF_TEST_MAIN=1")
	// A file, not a pipe: a child left behind by a failure must not hold
	// up Wait.
	logf, err := os.Create(filepath.Join(t.TempDir(), "successor.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	tk.Stderr = logf
	if err := tk.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- tk.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			tk.Process.Kill()
			<-exited
		}
	}()
	// The successor answers next to the path once it is waiting.
	waitSocket(t, filepath.Join(filepath.Dir(sock), fmt.Sprintf(".zdh%d", tk.Process.Pid)))
	if got := lsPID(ctx, t, sock); got != old {
		t.Fatalf("while the successor waits, ls answers from pid %d; want the old server, %d", got, old)
	}
	p, err := os.FindProcess(old) // startServe's server, our child
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := tryLs(ctx, sock)
		if err == nil && got == tk.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the successor (pid %d) did not take the path over after its predecessor died: pid %d, %v", tk.Process.Pid, got, err)
		}
	}
	tk.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		// Its child, sleep, dies of the forwarded TERM: 128+15.
		if tk.ProcessState.ExitCode() != 143 {
			t.Errorf("successor stopped by TERM: %v; want exit status 143 (its child's)", err)
		}
	case <-ctx.Done():
		t.Fatal("successor did not stop on TERM")
	}
	if log, _ := os.ReadFile(logf.Name()); !strings.Contains(string(log), "predecessor went away; serving on the handoff path") {
		t.Errorf("successor log %q; want the takeover logged", log)
	}
}
