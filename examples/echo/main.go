// Command echo is the example app of zd: an HTTP and WebSocket server that
// knows nothing of zd. It takes its listening sockets from systemd's
// LISTEN_FDS protocol, reports readiness with READY=1 on NOTIFY_SOCKET, says
// in every response which process and generation served it, and drains
// without losing a request on SIGTERM. Run it under zd-run:
//
//	zd-run --listen tcp://127.0.0.1:8080 --workers 4 -- ./echo
//
// or alone with -listen ADDR. All the logic is in package echoapp so the
// test suite can run the same code in-process.
package main

import (
	"os"

	"github.com/zdtools/zd/examples/echo/echoapp"
)

func main() {
	os.Exit(echoapp.Main(os.Args[1:], os.Stderr))
}
