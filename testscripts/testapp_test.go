package testscripts

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// testApp is an app that knows nothing of zd: it takes its listening
// sockets from LISTEN_FDS (checking LISTEN_PID), answers every TCP or unix
// connection with one line "served by PID", and on SIGTERM stops accepting,
// finishes the connections it has and exits 0. It optionally sends READY=1 to
// NOTIFY_SOCKET.
func testApp(args []string) int {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid != os.Getpid() || n < 1 {
		fmt.Fprintf(os.Stderr, "testapp: no sockets for me (LISTEN_PID=%q LISTEN_FDS=%q, my pid %d)\n",
			os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getpid())
		return 1
	}
	var lns []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		ln, err := net.FileListener(os.NewFile(uintptr(fd), "listen"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "testapp: fd %d: %v\n", fd, err)
			return 1
		}
		lns = append(lns, ln)
	}
	if path := os.Getenv("NOTIFY_SOCKET"); path != "" {
		if path[0] == '@' {
			path = "\x00" + path[1:]
		}
		if c, err := net.Dial("unixgram", path); err == nil {
			c.Write([]byte("READY=1"))
			c.Close()
		}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	var wg sync.WaitGroup
	msg := []byte(fmt.Sprintf("served by %d\n", os.Getpid()))
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.Write(msg)
					c.Close()
				}()
			}
		}()
	}
	<-term
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return 0
}
