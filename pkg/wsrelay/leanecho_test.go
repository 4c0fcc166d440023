package wsrelay

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// The lean echo backend is what an app that minds its cost per connection
// writes instead of net/http's server and a WebSocket library: an accept
// loop, one goroutine a connection, http.ReadRequest on a pooled reader,
// and this package's frame reader and writer (RFC 6455 server role: masked
// frames in, unmasked out, Ping answered, Close echoed). The move benchmark
// runs it beside the coder/websocket echo (ZD_WSRELAY_ECHO=lean), so how
// much of a move's cost is the backend's library shows apart from what any
// backend must do (accept, read a handshake, answer it, close).

var leanReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// serveLean accepts on ln until it is closed.
func serveLean(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go leanEcho(c)
	}
}

// leanEcho answers one connection's WebSocket handshake and echoes its
// messages until it closes.
func leanEcho(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // the handshake
	br := leanReaders.Get().(*bufio.Reader)
	br.Reset(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		leanReaders.Put(br)
		return
	}
	key, status, err := CheckUpgrade(req)
	if err != nil {
		leanReaders.Put(br)
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nConnection: close\r\n\r\n", status, http.StatusText(status))
		return
	}
	out := getBuf()
	b := append((*out)[:0], "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	var accept [28]byte
	acceptKey(accept[:], []byte(key))
	b = append(b, accept[:]...)
	if offered(req.Header, "chat") {
		b = append(b, "\r\nSec-WebSocket-Protocol: chat"...)
	}
	b = append(b, "\r\n\r\n"...)
	_, err = c.Write(b)
	*out = b
	putBuf(out)
	if err != nil {
		leanReaders.Put(br)
		return
	}
	var rd msgReader
	carried, _ := br.Peek(br.Buffered())
	rd.fr.init(c, carried)
	br.Reset(nil)
	leanReaders.Put(br)
	rd.expectMasked = true
	rd.maxMessage = 64 << 20
	defer rd.release()
	c.SetReadDeadline(time.Time{})
	var ctrl [maxHeaderLen + maxControlPayload]byte
	for {
		msg, err := rd.next()
		if err != nil {
			var ce *CloseError
			if errors.As(err, &ce) {
				c.Write(appendFrame(ctrl[:0], true, 0, opClose, closePayload(ce.Code, ""), false))
			}
			return
		}
		switch msg.op {
		case opPing:
			c.Write(appendFrame(ctrl[:0], true, 0, opPong, msg.payload, false))
			continue
		case opPong:
			continue
		case opClose:
			code, _, err := parseClose(msg.payload)
			if err != nil || code == CloseNoStatus {
				code = CloseNormal
			}
			c.Write(appendFrame(ctrl[:0], true, 0, opClose, closePayload(code, ""), false))
			return
		}
		out := getBuf()
		*out = appendFrame((*out)[:0], true, 0, msg.op, msg.payload, false)
		_, err = c.Write(*out)
		putBuf(out)
		if err != nil {
			return
		}
	}
}
