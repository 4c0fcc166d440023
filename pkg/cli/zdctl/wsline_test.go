package zdctl

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zdtools/zd/pkg/queueapi"
)

func TestWSStatusLine(t *testing.T) {
	ws := func(n int64) queueapi.WebSocketStats {
		return queueapi.WebSocketStats{Sessions: n, Protocols: map[string]int64{"h1": n}}
	}
	be := func(slot, gen, n int) queueapi.BackendStatus {
		return queueapi.BackendStatus{Addr: "unix:///run/zd/app/w.sock", PID: 100 + slot, Slot: slot, Generation: gen, WSSessions: n}
	}
	for _, tc := range []struct {
		q    queueapi.Status
		want string
	}{
		{queueapi.Status{}, ""},
		{queueapi.Status{WebSocket: ws(3), Backends: []queueapi.BackendStatus{be(0, 4, 2), be(1, 4, 1), be(2, 4, 0)}},
			"websocket: 3 sessions (h1 3), 0 moving; slot 0: 2, slot 1: 1"},
		{queueapi.Status{WebSocket: ws(3), Backends: []queueapi.BackendStatus{be(0, 4, 2), be(0, 5, 1)}},
			"websocket: 3 sessions (h1 3), 0 moving; slot 0 gen 4: 2, slot 0 gen 5: 1"},
		{queueapi.Status{WebSocket: ws(1), Backends: []queueapi.BackendStatus{{Addr: "tcp://127.0.0.1:8080", WSSessions: 1}}},
			"websocket: 1 sessions (h1 1), 0 moving; tcp://127.0.0.1:8080: 1"},
	} {
		if got := wsStatusLine(tc.q); got != tc.want {
			t.Errorf("wsStatusLine(%+v) = %q; want %q", tc.q.WebSocket, got, tc.want)
		}
	}
	var many []queueapi.BackendStatus
	for i := range 12 {
		many = append(many, be(i, 1, 1000))
	}
	got := wsStatusLine(queueapi.Status{WebSocket: ws(12000), Backends: many})
	if n := utf8.RuneCountInString(got); n != 80 || !strings.HasSuffix(got, "…") {
		t.Errorf("wsStatusLine with 12 backends = %q (%d columns); want it cut to 80 with …", got, n)
	}
}
