package testscripts

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket sessions through zd-queue outlive every reload behind it:
// gorilla clients (independent of the relay and of the example app's
// coder/websocket) send numbered messages to the example app's echo while
// zd-run reloads it with rolling, blue-green and --exclusive; zd-queue moves
// each session to the new workers. Every echo is checked: no session closes,
// no message is lost, doubled or reordered.
func TestWebSocketAcrossReloadsBehindZdQueue(t *testing.T) {
	const clients = 10
	r := startZdRun(t, "--workers", "2", "--worker-listen", "unix://$ZD_STATE_DIR/w{slot}.{gen}.sock", "--", "zd-echo")
	r.waitHealthy()
	qsock := r.startZdQueue()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", qsock)
	}, HandshakeTimeout: 30 * time.Second}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, clients)
	counts := make([]int, clients)
	for i := range clients {
		c, _, err := d.DialContext(ctx, "ws://zd/ws", nil)
		if err != nil {
			t.Fatalf("client %d: dial through zd-queue: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for n := 0; ; n++ {
				select {
				case <-stop:
					c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(5*time.Second))
					return
				default:
				}
				want := fmt.Sprintf("c%d m%d", i, n)
				c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, []byte(want)); err != nil {
					errs[i] = fmt.Errorf("client %d: write %d: %v", i, n, err)
					return
				}
				_, got, err := c.ReadMessage()
				if err != nil || string(got) != want {
					errs[i] = fmt.Errorf("client %d: echo %d = %q, %v; want %q", i, n, got, err, want)
					return
				}
				counts[i] = n + 1
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for _, args := range queueReloads {
		r.reload(args...)
	}
	close(stop)
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Error(err)
		}
		total += counts[i]
	}
	out, _, _ := r.zdctl("queue", "status")
	if !strings.Contains(out, "websocket: ") {
		t.Errorf("zdctl queue status shows no websocket line:\n%s", out)
	}
	t.Logf("%d sessions, %d echoes checked through %d reloads; %s", clients, total, len(queueReloads), firstLine(out, "websocket: "))
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
