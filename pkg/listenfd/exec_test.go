package listenfd

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// runChild runs the test binary in a child mode with files at 3, 4, ...
func runChild(t *testing.T, mode string, files []*os.File, env ...string) report {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "LISTENFD_TEST_CHILD="+mode)...)
	cmd.ExtraFiles = files
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child %s: %v\n%s", mode, err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("child %s output %q: %v\n%s", mode, out.String(), err, stderr.String())
	}
	if r.PID != cmd.Process.Pid {
		t.Errorf("reporting pid %d, started pid %d: exec did not keep the pid", r.PID, cmd.Process.Pid)
	}
	return r
}

func threeListeners(t *testing.T) ([]*os.File, []string) {
	var files []*os.File
	var locals []string
	for i := 0; i < 3; i++ {
		f, info := mustListen(t, "tcp://127.0.0.1:0")
		files = append(files, f)
		locals = append(locals, info.Local)
	}
	return files, locals
}

// Exec moves the child's fds 3,4,5 to 5,3,4 order (every target occupied
// by another source), names them, sets LISTEN_* for its own pid and
// replaces stale LISTEN_* entries.
func TestExecPermutes(t *testing.T) {
	files, locals := threeListeners(t)
	r := runChild(t, "exec", files, "LISTENFD_TEST_ORDER=2,0,1", "LISTENFD_TEST_NAMES=c,a,")
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	want := map[string]string{"LISTEN_PID": itoa(r.PID), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "c:a:unknown"}
	if !reflect.DeepEqual(r.Env, want) {
		t.Errorf("env = %v; want %v", r.Env, want)
	}
	if wantLocals := []string{locals[2], locals[0], locals[1]}; !reflect.DeepEqual(r.Locals, wantLocals) {
		t.Errorf("fds 3,4,5 are %v; want %v", r.Locals, wantLocals)
	}
	if !reflect.DeepEqual(r.Cloexec, []bool{false, false, false}) {
		t.Errorf("close-on-exec = %v; want none (they were passed)", r.Cloexec)
	}
	if r.Sockets != 3 {
		t.Errorf("%d sockets open after exec; want exactly the 3 passed", r.Sockets)
	}
}

func TestInheritedChild(t *testing.T) {
	files, locals := threeListeners(t)
	r := runChild(t, "inherit", files[:2], "LISTEN_FDS=2", "LISTEN_FDNAMES=web:ctl")
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	if !reflect.DeepEqual(r.Names, []string{"web", "ctl"}) || !reflect.DeepEqual(r.Locals, locals[:2]) {
		t.Errorf("Inherited = %v at %v; want [web ctl] at %v", r.Names, r.Locals, locals[:2])
	}
	if !reflect.DeepEqual(r.Cloexec, []bool{true, true}) {
		t.Errorf("close-on-exec = %v; want set on every inherited fd", r.Cloexec)
	}

	// fd 4 might be the child's own netpoller; 60 is surely not open.
	r = runChild(t, "inherit", files[:1], "LISTEN_FDS=60")
	if !strings.Contains(r.Err, "LISTEN_FDS=60 but fd ") || !strings.Contains(r.Err, "bad file descriptor") {
		t.Errorf("Inherited with fd 4 closed: err %q; want it named", r.Err)
	}
}

func TestExecErrors(t *testing.T) {
	files, _ := threeListeners(t)
	if err := Exec("/nonexistent/zd", []string{"zd"}, nil, files); err == nil || !strings.Contains(err.Error(), "/nonexistent/zd") {
		t.Errorf("Exec of a missing file = %v", err)
	}
	dup, err := unix.Dup(int(os.Stderr.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	named := os.NewFile(uintptr(dup), "a:b")
	defer named.Close()
	if err := Exec("/bin/true", []string{"true"}, nil, []*os.File{named}); err == nil || !strings.Contains(err.Error(), "LISTEN_FDNAMES separator") {
		t.Errorf("Exec with a bad name = %v", err)
	}
	if err := ExecFDs("/bin/true", []string{"true"}, nil, []int{0}, []string{"a", "b"}); err == nil || !strings.Contains(err.Error(), "2 names for 1 fds") {
		t.Errorf("ExecFDs with names mismatch = %v", err)
	}
}

// Exec arranges descriptors even over the Go runtime's own netpoller
// (epoll, eventfd) without crashing: the moves happen in a private copy
// of the descriptor table. The child makes sure its netpoller sits at 6
// and up, inside the ten target slots 3..12.
func TestExecOverNetpoller(t *testing.T) {
	files, locals := threeListeners(t)
	r := runChild(t, "exec", files, "LISTENFD_TEST_ORDER=0,1,2,0,1,2,0,1,2,0", "LISTENFD_TEST_NAMES=a,b,c,a,b,c,a,b,c,a",
		"LISTENFD_TEST_POLLER=1")
	if r.Err != "" {
		t.Fatal(r.Err)
	}
	want := []string{locals[0], locals[1], locals[2], locals[0], locals[1], locals[2], locals[0], locals[1], locals[2], locals[0]}
	if !reflect.DeepEqual(r.Locals, want) {
		t.Errorf("fds 3..12 are %v; want %v", r.Locals, want)
	}
	if r.Env["LISTEN_FDS"] != "10" || r.Sockets != 10 {
		t.Errorf("LISTEN_FDS=%s, %d sockets; want 10 and 10", r.Env["LISTEN_FDS"], r.Sockets)
	}
}

// Without a private table, a netpoller descriptor in a target slot is
// refused rather than replaced.
func TestCheckNotRuntime(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := checkNotRuntime(ep, nil); err == nil || !strings.Contains(err.Error(), "anon_inode:[eventpoll]") {
		t.Errorf("checkNotRuntime(epoll) = %v; want a refusal", err)
	}
	if err := checkNotRuntime(ep, []int{ep}); err != nil {
		t.Errorf("checkNotRuntime(epoll that is passed on) = %v; want nil", err)
	}
	f, _ := mustListen(t, "tcp://127.0.0.1:0")
	rc, _ := f.SyscallConn()
	var sock int
	rc.Control(func(fd uintptr) { sock = int(fd) })
	if err := checkNotRuntime(sock, nil); err != nil {
		t.Errorf("checkNotRuntime(socket) = %v; want nil", err)
	}
}
