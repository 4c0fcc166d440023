package wsrelay

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientCloseWhileMoving: a client that sends messages and then its
// Close while its session moves loses none of them: they are held, go to
// the new backend once it is attached, their echoes reach the client, and
// then the client's Close is answered (with its own code), as on an
// attached session. If no backend takes the session, the client's Close
// is answered 1012, which says what became of its messages.
func TestClientCloseWhileMoving(t *testing.T) {
	a, b := startEcho(t, "a", false), startEcho(t, "b", false)
	rt := &router{}
	rt.set(a)
	// Re-attach dials wait at the gate, so the session is surely moving
	// when the client sends.
	gate := make(chan struct{})
	var dials atomic.Int32
	dial := func(ctx context.Context) (net.Conn, string, error) {
		if dials.Add(1) > 1 {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
		}
		return rt.dial(ctx)
	}
	r, url := startRelay(t, Config{Dial: dial, ReattachTimeout: 20 * time.Second}, rt)
	c := dialRaw(t, url+"/ws", nil)
	c.write(frame(true, 0, opText, []byte("m0"), false), 0)
	if f, err := c.readMessage(10 * time.Second); err != nil || string(f.payload) != "m0" {
		t.Fatalf("first echo = %q, %v; want m0", f.payload, err)
	}

	rt.set(b)
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- r.Drain(ctx, "a")
	}()
	waitFor(t, "the session to be moving", 10*time.Second, func() bool { return r.Stats().Moving == 1 })
	c.write(frame(true, 0, opText, []byte("m1"), false), 0)
	c.write(frame(true, 0, opText, []byte("m2"), false), 0)
	c.write(frame(true, 0, opClose, closePayload(4321, "bye"), false), 0)
	waitFor(t, "the held messages", 10*time.Second, func() bool { return r.Stats().HeldBytes > 0 })
	close(gate)

	var got []string
	for {
		f, err := c.readFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("after %q: read: %v", got, err)
		}
		if f.op == opClose {
			if code := binary.BigEndian.Uint16(f.payload); code != 4321 {
				t.Errorf("Close reply %d; want the client's own 4321", code)
			}
			break
		}
		got = append(got, string(f.payload))
	}
	if len(got) != 2 || got[0] != "m1" || got[1] != "m2" {
		t.Errorf("echoes after the Close = %q; want [m1 m2]", got)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
	if n := b.echoed.Load(); n != 2 {
		t.Errorf("new backend echoed %d messages; want 2", n)
	}
}

// TestClientCloseWhileMovingNoBackend: the move cannot finish; the
// client's Close is answered 1012 once the re-attach gives up, not 1000
// at once as if its held messages had been delivered.
func TestClientCloseWhileMovingNoBackend(t *testing.T) {
	a := startEcho(t, "a", false)
	rt := &router{}
	rt.set(a)
	r, url := startRelay(t, Config{ReattachTimeout: 300 * time.Millisecond}, rt)
	c := dialRaw(t, url+"/ws", nil)
	c.write(frame(true, 0, opText, []byte("m0"), false), 0)
	if f, err := c.readMessage(10 * time.Second); err != nil || string(f.payload) != "m0" {
		t.Fatalf("first echo = %q, %v; want m0", f.payload, err)
	}
	rt.set()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r.Drain(ctx, "a")
	}()
	waitFor(t, "the session to be moving", 10*time.Second, func() bool { return r.Stats().Moving == 1 })
	c.write(frame(true, 0, opText, []byte("m1"), false), 0)
	c.write(frame(true, 0, opClose, closePayload(CloseNormal, ""), false), 0)
	for {
		f, err := c.readFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if f.op == opClose {
			if code := binary.BigEndian.Uint16(f.payload); code != CloseServiceRestart {
				t.Errorf("Close reply %d; want 1012: the held message went nowhere", code)
			}
			return
		}
		t.Errorf("unexpected %q before the Close", f.payload)
	}
}
