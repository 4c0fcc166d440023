package wsrelay

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawClient speaks RFC 6455 by hand, frame by frame, so tests can send what
// a conforming library never would. Its inflater is the standard library's
// compress/flate, independent of the relay's klauspost/compress.
type rawClient struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func dialRaw(t testing.TB, url string, hdr http.Header) *rawClient {
	t.Helper()
	c, resp, err := dialRawErr(url, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d; want 101", resp.StatusCode)
	}
	return &rawClient{t: t, c: c, br: bufio.NewReader(c), resp: resp}
}

func dialRawErr(url string, hdr http.Header) (net.Conn, *http.Response, error) {
	hostPath := strings.TrimPrefix(url, "ws://")
	host, path, _ := strings.Cut(hostPath, "/")
	c, err := net.Dial("tcp", host)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET /%s HTTP/1.1\r\nHost: %s\r\n", path, host)
	h := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	for k, v := range hdr {
		h[k] = v
	}
	for k, vv := range h {
		for _, v := range vv {
			if v != "" {
				fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			}
		}
	}
	b.WriteString("\r\n")
	c.SetDeadline(time.Now().Add(30 * time.Second)) // the handshake, on a busy machine
	if _, err := c.Write(b.Bytes()); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, nil, fmt.Errorf("bytes after the handshake answer")
	}
	c.SetDeadline(time.Time{})
	return c, resp, nil
}

// frame encodes a client frame (masked unless unmasked is set).
func frame(fin bool, rsv, op byte, p []byte, unmasked bool) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch {
	case len(p) <= 125:
		out = append(out, mbit|byte(len(p)))
	case len(p) <= 0xFFFF:
		out = append(out, mbit|126, byte(len(p)>>8), byte(len(p)))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(len(p)))
	}
	if unmasked {
		return append(out, p...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, c := range p {
		out = append(out, c^key[i%4])
	}
	return out
}

func (c *rawClient) write(b []byte, chop int) {
	c.t.Helper()
	if chop <= 0 {
		chop = len(b)
	}
	for len(b) > 0 {
		n := min(chop, len(b))
		if _, err := c.c.Write(b[:n]); err != nil {
			// The relay may close on a protocol error before all is
			// sent; what it answered is checked next.
			return
		}
		b = b[n:]
	}
}

// readBound bounds each read of the relay's answer: a bound for a hang, not
// a speed limit (echoing a 4 MiB message under -race on a busy 2-core
// machine took more than 10 s).
const readBound = time.Minute

type srvFrame struct {
	fin     bool
	rsv     byte
	op      byte
	payload []byte
}

func (c *rawClient) readFrame(d time.Duration) (srvFrame, error) {
	c.c.SetReadDeadline(time.Now().Add(d))
	var f srvFrame
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return f, err
	}
	f.fin, f.rsv, f.op = h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return f, fmt.Errorf("server frame is masked")
	}
	l := uint64(h[1] & 0x7f)
	switch l {
	case 126:
		var x [2]byte
		io.ReadFull(c.br, x[:])
		l = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		io.ReadFull(c.br, x[:])
		l = binary.BigEndian.Uint64(x[:])
	}
	f.payload = make([]byte, l)
	_, err := io.ReadFull(c.br, f.payload)
	return f, err
}

// readMessage reads a whole message, inflating it when RSV1 is set;
// control frames in between are returned as they come.
func (c *rawClient) readMessage(d time.Duration) (srvFrame, error) {
	var msg srvFrame
	for {
		f, err := c.readFrame(d)
		if err != nil {
			return f, err
		}
		if f.op&0x8 != 0 {
			return f, nil
		}
		if f.op != 0 {
			msg.op, msg.rsv = f.op, f.rsv
		}
		msg.payload = append(msg.payload, f.payload...)
		if f.fin {
			break
		}
	}
	if msg.rsv&rsv1 != 0 {
		zr := flate.NewReader(io.MultiReader(bytes.NewReader(msg.payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
		p, err := io.ReadAll(zr)
		if err != nil {
			return msg, fmt.Errorf("inflate: %v", err)
		}
		msg.payload = p
	}
	msg.fin = true
	return msg, nil
}

// deflateMsg compresses p as a permessage-deflate message payload with the
// standard library's compressor.
func deflateMsg(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	w.Write(p)
	w.Flush()
	out := b.Bytes()
	return out[:len(out)-4]
}
