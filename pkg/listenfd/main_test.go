package listenfd

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the child processes of the Exec and
// Inherited tests, chosen by LISTENFD_TEST_CHILD.
func TestMain(m *testing.M) {
	switch os.Getenv("LISTENFD_TEST_CHILD") {
	case "":
		goleak.VerifyTestMain(m)
	case "exec":
		os.Exit(childExec())
	case "report":
		os.Exit(childReport(false))
	case "inherit":
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		os.Exit(childReport(true))
	}
	os.Exit(9)
}

func itoa(i int) string { return strconv.Itoa(i) }

// childExec passes its fds 3.. to a fresh image of itself in the order
// LISTENFD_TEST_ORDER gives (indexes), named LISTENFD_TEST_NAMES.
func childExec() int {
	order := strings.Split(os.Getenv("LISTENFD_TEST_ORDER"), ",")
	names := strings.Split(os.Getenv("LISTENFD_TEST_NAMES"), ",")
	files := make([]*os.File, len(order))
	for i, o := range order {
		idx, _ := strconv.Atoi(o)
		files[i] = os.NewFile(uintptr(FirstFD+idx), names[i])
	}
	if os.Getenv("LISTENFD_TEST_POLLER") == "1" {
		// A pipe wakes the netpoller: its epoll and eventfd take the
		// lowest free descriptors, inside the target slots 3..12.
		r, w, err := os.Pipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		defer r.Close()
		defer w.Close()
		found := false
		for fd := 6; fd <= 12; fd++ {
			if l, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); l == "anon_inode:[eventpoll]" {
				found = true
			}
		}
		if !found {
			fmt.Fprintln(os.Stderr, "no netpoller among fds 6..12; the test proves nothing")
			return 5
		}
	}
	self, _ := os.Executable()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LISTENFD_TEST_CHILD=") {
			env = append(env, kv)
		}
	}
	env = append(env, "LISTENFD_TEST_CHILD=report", "LISTEN_FDS=99", "LISTEN_PID=1")
	err := Exec(self, []string{self, "-test.run=^$"}, env, files)
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 3
}

// report is what a child saw.
type report struct {
	PID     int
	Env     map[string]string
	Locals  []string
	Names   []string
	Cloexec []bool
	Sockets int // socket descriptors open in total
	Err     string
}

func childReport(inherited bool) int {
	r := report{PID: os.Getpid(), Env: map[string]string{}}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := os.LookupEnv(k); ok {
			r.Env[k] = v
		}
	}
	var fds []int
	if inherited {
		files, err := Inherited(true)
		if err != nil {
			r.Err = err.Error()
		}
		for i, f := range files {
			fds = append(fds, FirstFD+i)
			r.Names = append(r.Names, f.Name())
		}
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			if v, ok := os.LookupEnv(k); ok {
				r.Err += " still set: " + k + "=" + v
			}
		}
	} else {
		n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		for i := 0; i < n; i++ {
			fds = append(fds, FirstFD+i)
		}
	}
	for _, fd := range fds {
		info, err := DescribeFD(fd)
		if err != nil {
			r.Err += " " + err.Error()
		}
		r.Locals = append(r.Locals, info.Local)
		fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		r.Cloexec = append(r.Cloexec, fl&unix.FD_CLOEXEC != 0)
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			r.Sockets++
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}
