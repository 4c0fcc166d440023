package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsServer echoes messages; every session is closed with 1012 after
// closeAfter messages when closeAfter > 0; it echoes something else than it
// got when garble is set.
func wsServer(t *testing.T, closeAfter int, garble bool) string {
	t.Helper()
	var sessions atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		sessions.Add(1)
		for n := 1; ; n++ {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if garble {
				msg = append(msg, '!')
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
			if closeAfter > 0 && n == closeAfter {
				c.Close(websocket.StatusServiceRestart, "draining")
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func TestWebSocketEcho(t *testing.T) {
	rep, err := Run(context.Background(), Config{URL: wsServer(t, 0, false), WebSocket: true, Connections: 3,
		Requests: 30, MessageInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ws := rep.WebSocket
	if rep.OK != 30 || ws == nil || ws.Kept != 3 || ws.Dropped != 0 || ws.Opened != 3 {
		t.Errorf("echo server: ok %d, ws %+v; want 30 ok, 3 sessions kept, none dropped", rep.OK, ws)
	}
}

func TestWebSocketDropsCounted(t *testing.T) {
	// Each session is closed with 1012 after 2 echoes: the third message of
	// a session is lost, the session is counted dropped and redialled.
	rep, err := Run(context.Background(), Config{URL: wsServer(t, 2, false), WebSocket: true, Connections: 1,
		Requests: 6, MessageInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ws := rep.WebSocket
	if rep.OK != 4 || rep.Reset != 2 || ws.Kept != 0 || ws.Dropped != 2 || ws.CloseCodes["close 1012"] != 2 || ws.Opened != 2 {
		t.Errorf("closing server: counts %+v, ws %+v; want 4 ok, 2 reset, 2 dropped with close 1012, 2 opened (errors %q)",
			rep.Counts, ws, rep.Errors)
	}
}

func TestWebSocketMismatch(t *testing.T) {
	rep, err := Run(context.Background(), Config{URL: wsServer(t, 0, true), WebSocket: true, Connections: 1,
		Requests: 2, MessageInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.OK != 0 || rep.WebSocket.Mismatched != 2 || rep.WebSocket.CloseCodes["mismatch"] != 2 {
		t.Errorf("garbling server: ok %d ws %+v; want 0 ok, 2 mismatched", rep.OK, rep.WebSocket)
	}
}

func TestWebSocketRefused(t *testing.T) {
	url := "ws" + strings.TrimPrefix(refusedURL(t), "http")
	rep, err := Run(context.Background(), Config{URL: url, WebSocket: true, Connections: 1, Requests: 2, MessageInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Refused != 2 || rep.WebSocket.Opened != 0 {
		t.Errorf("refusing port: counts %+v ws %+v; want 2 refused, none opened", rep.Counts, rep.WebSocket)
	}
}
