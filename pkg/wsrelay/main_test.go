package wsrelay

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// TestMain runs the test binary's child roles:
// ZD_WSRELAY_CHILD=echo serves coder/websocket echo backends on the unix
// sockets of ZD_WSRELAY_SOCKS (with ZD_WSRELAY_ECHO=lean, the lean echo of
// leanecho_test.go); =clients opens ZD_WSRELAY_N idle sessions to
// ZD_WSRELAY_URL; =pump echoes 100-byte messages over one connection (to
// ZD_WSRELAY_URL, or straight to the backend socket ZD_WSRELAY_UNIX), as
// many as each line it reads says, answering "done". A child prints
// "ready" and lives until its stdin closes.
func TestMain(m *testing.M) {
	switch os.Getenv("ZD_WSRELAY_CHILD") {
	case "echo":
		os.Exit(childEcho(strings.Split(os.Getenv("ZD_WSRELAY_SOCKS"), ",")))
	case "clients":
		n, _ := strconv.Atoi(os.Getenv("ZD_WSRELAY_N"))
		os.Exit(childClients(os.Getenv("ZD_WSRELAY_URL"), n))
	case "pump":
		os.Exit(childPump(os.Getenv("ZD_WSRELAY_URL"), os.Getenv("ZD_WSRELAY_UNIX")))
	}
	raiseNoFile() // before any child starts: they inherit it
	os.Exit(m.Run())
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{"chat"}})
	if err != nil {
		return
	}
	c.SetReadLimit(64 << 20)
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

func childEcho(socks []string) int {
	for _, p := range socks {
		os.Remove(p)
		ln, err := net.Listen("unix", p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if os.Getenv("ZD_WSRELAY_ECHO") == "lean" {
			go serveLean(ln)
		} else {
			go http.Serve(ln, http.HandlerFunc(echoHandler))
		}
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// childClients opens n sessions by hand (no library, no goroutine each)
// and keeps them idle.
func childClients(url string, n int) int {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, resp, err := dialRawErr(url, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "client", i, err)
			return 1
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			fmt.Fprintln(os.Stderr, "client", i, "status", resp.StatusCode)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
	return 0
}
