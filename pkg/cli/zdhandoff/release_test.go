package zdhandoff

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/fdpass"
)

// beginRelease is a taker with --release up to its exec status; it
// returns the connection the successor would inherit.
func beginRelease(ctx context.Context, t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	var c *net.UnixConn
	// The previous release's handler may not have finished yet.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c = dialSock(t, sock)
		if err := fdpass.WriteMsg(ctx, c, request{V: protoVersion, Op: opTake, Release: true}); err != nil {
			t.Fatal(err)
		}
		var rep reply
		err := fdpass.ReadMsg(ctx, c, maxMsg, &rep)
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
	if err := fdpass.WriteMsg(ctx, c, status{V: protoVersion, Op: opExec}); err != nil {
		t.Fatal(err)
	}
	return c
}

func lsPID(ctx context.Context, t *testing.T, sock string) int {
	t.Helper()
	c := dialSock(t, sock)
	fdpass.WriteMsg(ctx, c, request{V: baseVersion, Op: opLs})
	var rep reply
	if err := fdpass.ReadMsg(ctx, c, maxMsg, &rep); err != nil || !rep.OK {
		t.Fatalf("ls reply = %+v, %v", rep, err)
	}
	return rep.PID
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
		ready status
		want  string
	}{
		{"silent", status{V: protoVersion, Op: opReady, PID: 1, Path: sock + ".nobody", Socket: absPath(sock)}, "its socket did not answer"},
		{"elsewhere", status{V: protoVersion, Op: opReady, PID: 1, Path: "/tmp/x.sock", Socket: absPath(sock)}, "answering at /tmp/x.sock"},
		{"other-socket", status{V: protoVersion, Op: opReady, PID: 1, Path: sock, Socket: "/elsewhere/h.sock"}, "it would serve on /elsewhere/h.sock"},
		{"wrong-pid", status{V: protoVersion, Op: opReady, PID: 1, Path: sock, Socket: absPath(sock)}, "is served by pid"},
		{"out-of-turn", status{V: protoVersion, Op: opPublished, PID: 1}, `expected a ready status, got "published"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := beginRelease(ctx, t, sock)
			// One release at a time.
			o := dialSock(t, sock)
			fdpass.WriteMsg(ctx, o, request{V: protoVersion, Op: opTake, Release: true})
			var rep reply
			if err := fdpass.ReadMsg(ctx, o, maxMsg, &rep); err != nil || rep.OK || !strings.Contains(rep.Error.Message, "another take --release is in progress") {
				t.Errorf("second release = %+v, %v; want a refusal", rep, err)
			}
			if err := fdpass.WriteMsg(ctx, c, tc.ready); err != nil {
				t.Fatal(err)
			}
			var st status
			if err := fdpass.ReadMsg(ctx, c, maxMsg, &st); err != nil || st.Op != opAbort || !strings.Contains(st.Error, tc.want) {
				t.Errorf("answer to %+v = %+v, %v; want abort saying %q", tc.ready, st, err, tc.want)
			}
			if got := lsPID(ctx, t, sock); got != pid {
				t.Errorf("after the aborted release ls answers from pid %d; want the server, %d", got, pid)
			}
		})
	}
}
