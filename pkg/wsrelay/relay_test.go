package wsrelay

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMovesKeepEveryMessage: gorilla clients send numbered messages and
// check every echo while their sessions are moved off draining backends
// again and again: no close, nothing lost, doubled or reordered.
func TestMovesKeepEveryMessage(t *testing.T) {
	const clients, perClient, moves = 20, 300, 10
	a, b := startEcho(t, "a", false), startEcho(t, "b", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{}, rt)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sent := make(chan struct{}, clients*perClient)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- numberedClient(ctx, url+"/ws?c="+strconv.Itoa(i), i, perClient, sent)
		}()
	}
	cur, other := a, b
	for m := 0; m < moves; m++ {
		waitFor(t, "messages flowing", 20*time.Second, func() bool { return len(sent) >= (m+1)*clients*perClient/(moves+2) })
		rt.set(other)
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.Drain(dctx, cur.name); err != nil {
			t.Fatalf("Drain(%s): %v", cur.name, err)
		}
		dcancel()
		old := cur
		waitFor(t, "the drained backend's sessions to end", 10*time.Second, func() bool { return old.open() == 0 })
		cur, other = other, cur
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st := r.Stats()
	if st.Moved < uint64(clients) {
		t.Errorf("Stats.Moved = %d; want at least %d", st.Moved, clients)
	}
	t.Logf("stats: moved %d, failed %d, messages to backend %d, to client %d, closes %v, move max %v",
		st.Moved, st.MoveFailed, st.MessagesToBackend, st.MessagesToClient, st.Closes, st.MoveMax)
}

// numberedClient sends n numbered messages with a window of 8 in flight
// and checks each echo comes back once, in order.
func numberedClient(ctx context.Context, url string, id, n int, sent chan<- struct{}) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{"chat"}}
	c, resp, err := d.DialContext(ctx, url, http.Header{"Origin": {"http://example.test"}})
	if err != nil {
		return fmt.Errorf("client %d: dial: %v", id, err)
	}
	defer c.Close()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		return fmt.Errorf("client %d: subprotocol %q; want chat", id, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	errc := make(chan error, 1)
	window := make(chan struct{}, 8)
	go func() {
		for i := 0; i < n; i++ {
			window <- struct{}{}
			msg := fmt.Sprintf("c%d m%d", id, i)
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				errc <- fmt.Errorf("client %d: write %d: %v", id, i, err)
				return
			}
			sent <- struct{}{}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let moves land mid-stream
			}
		}
		errc <- nil
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // every echo of the session, on a busy machine
	for i := 0; i < n; i++ {
		_, data, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("client %d: read echo %d: %v", id, i, err)
		}
		want := fmt.Sprintf("c%d m%d", id, i)
		if string(data) != want {
			return fmt.Errorf("client %d: echo %d = %q; want %q", id, i, data, want)
		}
		<-window
	}
	if err := <-errc; err != nil {
		return err
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(5*time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, 1000) {
				return fmt.Errorf("client %d: close: %v; want a 1000 reply", id, err)
			}
			return nil
		}
	}
}
