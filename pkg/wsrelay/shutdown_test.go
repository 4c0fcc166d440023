package wsrelay

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSessionShutdown: Session.Shutdown ends one session with Close 1012,
// whether it is called before Run (the session ends as soon as it runs)
// or while it runs; other sessions carry on.
func TestSessionShutdown(t *testing.T) {
	be := startEcho(t, "a", false)
	rt := &router{}
	rt.set(be)
	r := New(Config{Dial: rt.dial})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("relay Close: %v", err)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// open runs a session over a real TCP connection, the way an h2/h3
	// server runs one over its stream; it returns the client's end.
	open := func(before bool) (*rawClient, *Session, chan struct{}) {
		s, _, err := r.Open(context.Background(), &Request{Target: "/ws", Host: "zd", Header: http.Header{}, Transport: "h3"})
		if err != nil {
			t.Fatal(err)
		}
		if before {
			s.Shutdown()
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ran := make(chan struct{})
		go func() { defer close(ran); s.Run(sc, nil) }()
		return &rawClient{t: t, c: c, br: bufio.NewReader(c)}, s, ran
	}
	closeCode := func(c *rawClient) uint16 {
		t.Helper()
		for {
			f, err := c.readFrame(10 * time.Second)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if f.op == opClose {
				c.write(frame(true, 0, opClose, f.payload[:2], false), 0)
				return binary.BigEndian.Uint16(f.payload)
			}
		}
	}
	echo := func(c *rawClient, msg string) {
		t.Helper()
		c.write(frame(true, 0, opText, []byte(msg), false), 0)
		f, err := c.readMessage(10 * time.Second)
		if err != nil || string(f.payload) != msg {
			t.Fatalf("echo = %q, %v; want %q", f.payload, err, msg)
		}
	}

	early, _, earlyRan := open(true)
	if code := closeCode(early); code != CloseServiceRestart {
		t.Errorf("Shutdown before Run: client got Close %d; want 1012", code)
	}
	other, _, otherRan := open(false)
	during, s, duringRan := open(false)
	echo(during, "before")
	echo(other, "before")
	s.Shutdown()
	s.Shutdown() // twice is fine
	if code := closeCode(during); code != CloseServiceRestart {
		t.Errorf("Shutdown while running: client got Close %d; want 1012", code)
	}
	for _, ch := range []chan struct{}{earlyRan, duringRan} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after Shutdown and the client's Close reply")
		}
	}
	s.Shutdown() // after Run: nothing happens
	echo(other, "after")
	if n := r.Sessions(""); n != 1 {
		t.Errorf("%d sessions open; want the other one", n)
	}
	other.write(frame(true, 0, opClose, []byte{0x03, 0xe8}, false), 0)
	closeCode(other)
	<-otherRan
	early.c.Close()
	during.c.Close()
	other.c.Close()
}
