package echoapp

import (
	"context"
	"net/http"
	"sync"

	"github.com/coder/websocket"
	"github.com/zdtools/zd/pkg/snapshot"
)

// wsSession is one WebSocket echo session, closable by the drain.
type wsSession struct {
	conn   *websocket.Conn
	cancel context.CancelFunc
	once   sync.Once
}

// goingAway closes the session with 1012 (service restart), the close code
// that tells a client or zd-queue to reconnect to another worker.
func (s *wsSession) goingAway() {
	s.once.Do(func() {
		go func() { _ = s.conn.Close(websocket.StatusServiceRestart, "worker draining") }()
	})
}

func (s *wsSession) cut() { s.cancel() }

// serveWS echoes every message back on the same connection, text or binary.
func (a *app) serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &wsSession{conn: c, cancel: cancel}
	if !a.track.addSession(s) {
		c.Close(websocket.StatusServiceRestart, "worker draining")
		return
	}
	defer a.track.removeSession(s)
	var st *snapshot.Record
	if a.state != nil {
		if st = a.state.open(r, c.Subprotocol()); st == nil {
			c.Close(websocket.StatusServiceRestart, "worker draining")
			return
		}
		defer a.state.close(st)
	}
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			c.CloseNow()
			return
		}
		if st != nil && !a.state.message(st, len(msg)) {
			// The state was saved for a restart: this message is not taken;
			// the client sends it again to the worker it reconnects to.
			c.Close(websocket.StatusServiceRestart, "worker draining")
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			c.CloseNow()
			return
		}
	}
}
