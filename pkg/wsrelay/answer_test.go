package wsrelay

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

// TestBackendAnswerFields: the first backend's end-to-end fields in its 101
// (Set-Cookie, an app's own) reach the client's 101; its hop-by-hop and
// WebSocket fields do not come twice.
func TestBackendAnswerFields(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "b.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "sid=abc; HttpOnly")
		w.Header().Add("Set-Cookie", "theme=dark")
		w.Header().Set("X-App", "echo")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, p, err := c.Read(ctx)
			if err != nil || c.Write(ctx, typ, p) != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	dial := func(ctx context.Context) (net.Conn, string, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "unix", ln.Addr().String())
		return c, "b", err
	}
	_, url := startRelay(t, Config{Dial: dial}, &router{})
	c, resp, err := gorilla.DefaultDialer.Dial(url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := resp.Header.Values("Set-Cookie"), []string{"sid=abc; HttpOnly", "theme=dark"}; !slices.Equal(got, want) {
		t.Errorf("client's 101 Set-Cookie = %q; want %q", got, want)
	}
	if got := resp.Header.Get("X-App"); got != "echo" {
		t.Errorf("client's 101 X-App = %q; want echo", got)
	}
	for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept"} {
		if n := len(resp.Header.Values(k)); n != 1 {
			t.Errorf("client's 101 has %d %s fields; want 1", n, k)
		}
	}
	if err := c.WriteMessage(gorilla.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "hi" {
		t.Fatalf("echo = %q, %v; want hi", p, err)
	}
}
