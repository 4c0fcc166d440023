package wsrelay

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// childPump is the throughput benchmark's client: gorilla/websocket, one
// connection, 256 messages of 100 bytes in flight, every echo read.
func childPump(url, unixPath string) int {
	d := websocket.Dialer{}
	if unixPath != "" {
		url = "ws://backend/ws"
		d.NetDial = func(string, string) (net.Conn, error) { return net.Dial("unix", unixPath) }
	}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pump:", err)
		return 1
	}
	defer c.Close()
	fmt.Println("ready")
	msg := []byte(strings.Repeat("x", 100))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, _ := strconv.Atoi(in.Text())
		if err := echoN(c, msg, n); err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("done")
	}
	return 0
}

func echoN(c *websocket.Conn, msg []byte, n int) error {
	window := make(chan struct{}, 256)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			window <- struct{}{}
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		if _, _, err := c.ReadMessage(); err != nil {
			return err
		}
		<-window
	}
	return <-errc
}
