package wsrelay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The server-side case groups of the Autobahn|Testsuite (which cannot run
// here), as tests of our own named by case number. The relay is the server
// under test, over real TCP, with a coder/websocket echo backend behind it
// (on a unix socket, and again over TCP). Where the suite lets a server
// choose (strict or non-strict UTF-8 failure), the relay fails fast.

type step struct {
	send []byte
	chop int       // write send in pieces of this many bytes
	want *srvFrame // the next message or control frame from the relay
	// optional: the relay may end the session (its next step, a close)
	// before this echo: Autobahn's NON-STRICT outcome, which a relay gets
	// when it fails the client while the echo is still on its way.
	optional bool
	// close: the relay's Close must carry one of these codes (0: no code),
	// then the connection must end.
	close []uint16
}

func tx(fin bool, rsv, op byte, p []byte) step { return step{send: frame(fin, rsv, op, p, false)} }
func txChop(chop int, fin bool, rsv, op byte, p []byte) step {
	return step{send: frame(fin, rsv, op, p, false), chop: chop}
}
func text(p string) step          { return tx(true, 0, opText, []byte(p)) }
func rx(op byte, p []byte) step   { return step{want: &srvFrame{op: op, payload: p}} }
func rxText(p string) step        { return rx(opText, []byte(p)) }
func closed(codes ...uint16) step { return step{close: codes} }
func maybe(s step) step           { s.optional = true; return s }
func echoText(p []byte) []step    { return []step{tx(true, 0, opText, p), rx(opText, p)} }
func echoBin(p []byte) []step     { return []step{tx(true, 0, opBinary, p), rx(opBinary, p)} }
func closeFrame(code uint16, reason string) []byte {
	p := []byte{byte(code >> 8), byte(code)}
	return append(p, reason...)
}

// quiet checks nothing came before a ping's pong.
func quiet() []step {
	return []step{tx(true, 0, opPing, []byte("sync")), rx(opPong, []byte("sync"))}
}

func cat(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch v := p.(type) {
		case step:
			out = append(out, v)
		case []step:
			out = append(out, v...)
		}
	}
	return out
}

func payload(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

type abCase struct {
	id    string
	steps []step
	hdr   http.Header // extra handshake fields
}

func autobahnCases() []abCase {
	var cs []abCase
	add := func(id string, parts ...any) { cs = append(cs, abCase{id: id, steps: cat(parts...)}) }

	// 1.x framing: text and binary of the length encodings' edges.
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	for i, n := range sizes {
		add(fmt.Sprintf("1.1.%d", i+1), echoText(payload(n, '*')), closeOK())
		add(fmt.Sprintf("1.2.%d", i+1), echoBin(payload(n, 0xfe)), closeOK())
	}
	add("1.1.8", txChop(997, true, 0, opText, payload(65536, '*')), rxText(string(payload(65536, '*'))), closeOK())
	add("1.2.8", txChop(997, true, 0, opBinary, payload(65536, 0xfe)), rx(opBinary, payload(65536, 0xfe)), closeOK())

	// 2.x pings and pongs.
	add("2.1", tx(true, 0, opPing, nil), rx(opPong, []byte{}), closeOK())
	add("2.2", tx(true, 0, opPing, []byte("Hello, world!")), rx(opPong, []byte("Hello, world!")), closeOK())
	add("2.3", tx(true, 0, opPing, []byte{0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff}), rx(opPong, []byte{0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff}), closeOK())
	add("2.4", tx(true, 0, opPing, payload(125, 0xfe)), rx(opPong, payload(125, 0xfe)), closeOK())
	add("2.5", tx(true, 0, opPing, payload(126, 0xfe)), closed(CloseProtocolError))
	add("2.6", txChop(1, true, 0, opPing, payload(125, 0xfe)), rx(opPong, payload(125, 0xfe)), closeOK())
	add("2.7", tx(true, 0, opPong, nil), quiet(), closeOK())
	add("2.8", tx(true, 0, opPong, []byte("unsolicited pong payload")), quiet(), closeOK())
	add("2.9", tx(true, 0, opPong, []byte("unsolicited pong payload")), tx(true, 0, opPing, []byte("ping payload")), rx(opPong, []byte("ping payload")), closeOK())
	var pings, pongs []step
	for i := range 10 {
		p := []byte(fmt.Sprintf("payload-%d", i))
		pings = append(pings, tx(true, 0, opPing, p))
		pongs = append(pongs, rx(opPong, p))
	}
	add("2.10", pings, pongs, closeOK())
	var chopped []step
	for _, s := range pings {
		s.chop = 1
		chopped = append(chopped, s)
	}
	add("2.11", chopped, pongs, closeOK())

	// 3.x reserved bits (no extension negotiated).
	add("3.1", tx(true, rsv1, opText, []byte("Hello, world!")), closed(CloseProtocolError))
	add("3.2", echoText([]byte("Hello, world!")), tx(true, rsv2, opText, []byte("Hello, world!")), tx(true, 0, opPing, nil), closed(CloseProtocolError))
	add("3.3", echoText([]byte("Hello, world!")), tx(true, rsv1|rsv2, opText, []byte("Hello, world!")), tx(true, 0, opPing, nil), closed(CloseProtocolError))
	add("3.4", echoText([]byte("Hello, world!")), txChop(1, true, rsv3, opText, []byte("Hello, world!")), tx(true, 0, opPing, nil), closed(CloseProtocolError))
	add("3.5", tx(true, rsv1|rsv3, opBinary, payload(8, 0xff)), closed(CloseProtocolError))
	add("3.6", tx(true, rsv2|rsv3, opPing, []byte("Hello, world!")), closed(CloseProtocolError))
	add("3.7", tx(true, rsv1|rsv2|rsv3, opClose, nil), closed(CloseProtocolError))

	// 4.x opcodes.
	for i, op := range []byte{3, 4, 5, 6, 7} {
		p := []byte(nil)
		if i%2 == 1 {
			p = []byte("reserved opcode payload")
		}
		add(fmt.Sprintf("4.1.%d", i+1), echoText([]byte("Hello, world!")), tx(true, 0, op, p), tx(true, 0, opPing, nil), closed(CloseProtocolError))
	}
	for i, op := range []byte{0xB, 0xC, 0xD, 0xE, 0xF} {
		p := []byte(nil)
		if i%2 == 1 {
			p = []byte("reserved opcode payload")
		}
		add(fmt.Sprintf("4.2.%d", i+1), echoText([]byte("Hello, world!")), tx(true, 0, op, p), tx(true, 0, opPing, nil), closed(CloseProtocolError))
	}

	// 5.x fragmentation.
	add("5.1", tx(false, 0, opPing, []byte("fragment1")), tx(true, 0, opContinuation, []byte("fragment2")), closed(CloseProtocolError))
	add("5.2", tx(false, 0, opPong, []byte("fragment1")), tx(true, 0, opContinuation, []byte("fragment2")), closed(CloseProtocolError))
	frag2 := []step{tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opContinuation, []byte("fragment2")), rxText("fragment1fragment2")}
	add("5.3", frag2, closeOK())
	add("5.4", txChop(1, false, 0, opText, []byte("fragment1")), txChop(1, true, 0, opContinuation, []byte("fragment2")), rxText("fragment1fragment2"), closeOK())
	add("5.5", frag2, frag2, closeOK())
	add("5.6", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opPing, []byte("ping")), tx(true, 0, opContinuation, []byte("fragment2")),
		rx(opPong, []byte("ping")), rxText("fragment1fragment2"), closeOK())
	add("5.7", txChop(1, false, 0, opText, []byte("fragment1")), txChop(1, true, 0, opPing, []byte("ping")), txChop(1, true, 0, opContinuation, []byte("fragment2")),
		rx(opPong, []byte("ping")), rxText("fragment1fragment2"), closeOK())
	add("5.8", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opPing, []byte("ping")), tx(false, 0, opContinuation, []byte("fragment2")),
		tx(true, 0, opPing, []byte("ping2")), tx(true, 0, opContinuation, []byte("fragment3")),
		rx(opPong, []byte("ping")), rx(opPong, []byte("ping2")), rxText("fragment1fragment2fragment3"), closeOK())
	add("5.9", tx(true, 0, opContinuation, []byte("non-continuation payload")), text("Hello, world!"), closed(CloseProtocolError))
	add("5.10", txChop(1, true, 0, opContinuation, []byte("non-continuation payload")), text("Hello, world!"), closed(CloseProtocolError))
	add("5.12", tx(false, 0, opContinuation, []byte("non-continuation payload")), text("Hello, world!"), closed(CloseProtocolError))
	add("5.13", txChop(1, false, 0, opContinuation, []byte("non-continuation payload")), text("Hello, world!"), closed(CloseProtocolError))
	add("5.15", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opContinuation, []byte("fragment2")), tx(false, 0, opContinuation, []byte("fragment3")),
		tx(true, 0, opText, []byte("fragment4")), maybe(rxText("fragment1fragment2")), closed(CloseProtocolError))
	add("5.16", tx(false, 0, opContinuation, []byte("fragment1")), tx(false, 0, opText, []byte("fragment2")), tx(true, 0, opContinuation, []byte("fragment3")), closed(CloseProtocolError))
	add("5.17", tx(true, 0, opContinuation, []byte("fragment1")), tx(false, 0, opText, []byte("fragment2")), tx(true, 0, opContinuation, []byte("fragment3")), closed(CloseProtocolError))
	add("5.18", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opText, []byte("fragment2")), closed(CloseProtocolError))
	add("5.19", tx(false, 0, opText, []byte("fragment1")), tx(false, 0, opContinuation, []byte("fragment2")), tx(true, 0, opPing, []byte("pongme 1!")),
		tx(false, 0, opContinuation, []byte("fragment3")), tx(true, 0, opPing, []byte("pongme 2!")), tx(true, 0, opContinuation, []byte("fragment4")),
		rx(opPong, []byte("pongme 1!")), rx(opPong, []byte("pongme 2!")), rxText("fragment1fragment2fragment3fragment4"), closeOK())
	add("5.20", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opPing, []byte("pongme 1!")), tx(true, 0, opContinuation, []byte("fragment2")),
		rx(opPong, []byte("pongme 1!")), rxText("fragment1fragment2"), closeOK())

	// 6.x UTF-8.
	add("6.1.1", echoText(nil), closeOK())
	add("6.1.2", tx(false, 0, opText, nil), tx(false, 0, opContinuation, nil), tx(true, 0, opContinuation, nil), rxText(""), closeOK())
	add("6.1.3", tx(false, 0, opText, nil), tx(false, 0, opContinuation, []byte("middle frame payload")), tx(true, 0, opContinuation, nil), rxText("middle frame payload"), closeOK())
	kosme := []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")
	add("6.2.1", echoText([]byte("Hello-µ@ßöäüàá-UTF-8!!")), closeOK())
	var split []step
	for i, c := range kosme {
		op := byte(opContinuation)
		if i == 0 {
			op = opText
		}
		split = append(split, tx(i == len(kosme)-1, 0, op, []byte{c}))
	}
	add("6.2.3", split, rxText(string(kosme)), closeOK())
	add("6.3.1", tx(true, 0, opText, []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")), closed(CloseInvalidPayload))
	// 6.4.x: fail fast, before the message ends.
	add("6.4.1", tx(false, 0, opText, kosme), tx(false, 0, opContinuation, []byte("\xf4\x90\x80\x80")), closed(CloseInvalidPayload))
	add("6.4.2", tx(false, 0, opText, append(append([]byte{}, kosme...), 0xf4)), tx(false, 0, opContinuation, []byte("\x90")), closed(CloseInvalidPayload))
	add("6.4.3", tx(false, 0, opText, kosme), tx(false, 0, opContinuation, []byte("\xf4")), tx(false, 0, opContinuation, []byte("\x90\x80\x80\x65")), closed(CloseInvalidPayload))
	add("6.4.4", tx(false, 0, opText, kosme), tx(false, 0, opContinuation, []byte("\xf4\x90")), closed(CloseInvalidPayload))
	valid := []string{"\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xef\xbf\xbf",
		"\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\xef\xb7\x90", "\x00"}
	for i, v := range valid {
		add(fmt.Sprintf("6.%d.1", i+5), echoText([]byte("a"+v+"z")), closeOK())
	}
	invalid := []string{"\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff", "\xc0", "\xe0\x80", "\xce\xba\xe1"}
	for i, v := range invalid {
		add(fmt.Sprintf("6.%d.1", i+20), tx(true, 0, opText, []byte("a"+v)), closed(CloseInvalidPayload))
	}

	// 7.x close handling.
	add("7.1.1", echoText([]byte("Hello World!")), closeOK())
	add("7.1.2", tx(true, 0, opClose, closeFrame(1000, "")), tx(true, 0, opClose, closeFrame(1000, "")), closed(1000))
	add("7.1.3", tx(true, 0, opClose, closeFrame(1000, "")), tx(true, 0, opPing, []byte("Hello World!")), closed(1000))
	add("7.1.4", tx(true, 0, opClose, closeFrame(1000, "")), text("Hello World!"), closed(1000))
	add("7.1.5", tx(false, 0, opText, []byte("fragment1")), tx(true, 0, opClose, closeFrame(1000, "")), tx(true, 0, opContinuation, []byte("fragment2")), closed(1000))
	add("7.1.6", tx(true, 0, opText, payload(256<<10, 'B')), text("Hello world!"), tx(true, 0, opClose, closeFrame(1000, "")),
		rx(opText, payload(256<<10, 'B')), rxText("Hello world!"), closed(1000))
	add("7.3.1", tx(true, 0, opClose, nil), closed(0, 1000))
	add("7.3.2", tx(true, 0, opClose, []byte{0x03}), closed(CloseProtocolError))
	add("7.3.3", tx(true, 0, opClose, closeFrame(1000, "")), closed(1000))
	add("7.3.4", tx(true, 0, opClose, closeFrame(1000, "Hello World!")), closed(1000))
	add("7.3.5", tx(true, 0, opClose, closeFrame(1000, strings.Repeat("*", 123))), closed(1000))
	add("7.3.6", tx(true, 0, opClose, closeFrame(1000, strings.Repeat("*", 124))), closed(CloseProtocolError))
	add("7.5.1", tx(true, 0, opClose, closeFrame(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64")), closed(CloseInvalidPayload))
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(fmt.Sprintf("7.7.%d", i+1), tx(true, 0, opClose, closeFrame(code, "")), closed(code, 1000))
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999} {
		add(fmt.Sprintf("7.9.%d", i+1), tx(true, 0, opClose, closeFrame(code, "")), closed(CloseProtocolError))
	}
	add("7.13.1", tx(true, 0, opClose, closeFrame(5000, "")), closed(CloseProtocolError))
	add("7.13.2", tx(true, 0, opClose, closeFrame(65535, "")), closed(CloseProtocolError))

	// 9.x limits (MaxMessage is 4 MiB in this suite).
	for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20} {
		add(fmt.Sprintf("9.1.%d", i+1), echoText(payload(n, '*')), closeOK())
		add(fmt.Sprintf("9.2.%d", i+1), echoBin(payload(n, 0xfe)), closeOK())
	}
	for i, fragSize := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		const total = 1 << 20
		var frags []step
		for off := 0; off < total; off += fragSize {
			op := byte(opContinuation)
			if off == 0 {
				op = opText
			}
			frags = append(frags, tx(off+fragSize >= total, 0, op, payload(fragSize, '*')))
		}
		add(fmt.Sprintf("9.4.%d", i+1), frags, rxText(string(payload(total, '*'))), closeOK())
	}
	var many, manyEcho []step
	for i := range 1000 {
		p := payload(i%128, byte('a'+i%26))
		many = append(many, tx(true, 0, opText, p))
		manyEcho = append(manyEcho, rx(opText, p))
	}
	add("9.7.1", many, manyEcho, closeOK())
	// Over the limit: 1009 whether whole or in fragments (section 7.4.1).
	add("9.x.1", tx(true, 0, opBinary, payload(4<<20+1, 1)), closed(CloseTooBig))
	add("9.x.2", tx(false, 0, opBinary, payload(3<<20, 1)), tx(true, 0, opContinuation, payload(1<<20+1, 1)), closed(CloseTooBig))

	// Bad input that Autobahn's server cases do not send but RFC 6455 forbids.
	add("x.unmasked", step{send: frame(true, 0, opText, []byte("unmasked"), true)}, closed(CloseProtocolError))
	add("x.length-not-minimal", step{send: []byte{0x81, 0x80 | 126, 0, 5, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}}, closed(CloseProtocolError))
	add("x.length-msb", step{send: []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}}, closed(CloseProtocolError))
	return cs
}

func closeOK() []step {
	return []step{tx(true, 0, opClose, closeFrame(1000, "")), closed(1000)}
}

func TestAutobahnServer(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "backend=unix"
		if tcp {
			name = "backend=tcp"
		}
		t.Run(name, func(t *testing.T) {
			be := startEcho(t, "ab", tcp)
			rt := &router{}
			rt.set(be)
			_, url := startRelay(t, Config{MaxMessage: 4 << 20}, rt)
			for _, c := range autobahnCases() {
				t.Run(c.id, func(t *testing.T) { runCase(t, url+"/ws", c) })
			}
		})
	}
}

func runCase(t *testing.T, url string, c abCase) {
	rc := dialRaw(t, url, c.hdr)
	defer rc.c.Close()
	var pending []byte
	flush := func() {
		if len(pending) > 0 {
			rc.write(pending, 0)
			pending = nil
		}
	}
	for i, s := range c.steps {
		if s.send != nil {
			if s.chop > 0 {
				flush()
				rc.write(s.send, s.chop)
			} else {
				pending = append(pending, s.send...)
			}
			continue
		}
		flush()
		if s.want != nil {
			got, err := rc.readMessage(readBound)
			if s.optional && err == nil && got.op == opClose && i+1 < len(c.steps) && c.steps[i+1].close != nil {
				checkClose(t, rc, got, c.steps[i+1].close)
				return
			}
			if err != nil {
				t.Fatalf("step %d: want op %d (%d bytes): %v", i, s.want.op, len(s.want.payload), err)
			}
			if got.op != s.want.op || !bytes.Equal(got.payload, s.want.payload) {
				t.Fatalf("step %d: got op %d %q; want op %d %q", i, got.op, clip(got.payload), s.want.op, clip(s.want.payload))
			}
			continue
		}
		expectClosed(t, rc, s.close)
	}
}

func expectClosed(t *testing.T, rc *rawClient, codes []uint16) {
	t.Helper()
	for {
		f, err := rc.readMessage(readBound)
		if err != nil {
			t.Fatalf("want a Close %v: %v", codes, err)
		}
		if f.op != opClose {
			continue // frames sent before the close are allowed (the echo of earlier messages)
		}
		checkClose(t, rc, f, codes)
		return
	}
}

func checkClose(t *testing.T, rc *rawClient, f srvFrame, codes []uint16) {
	t.Helper()
	{
		var code uint16
		if len(f.payload) >= 2 {
			code = uint16(f.payload[0])<<8 | uint16(f.payload[1])
		}
		ok := false
		for _, c := range codes {
			ok = ok || c == code
		}
		if !ok {
			t.Fatalf("Close code %d (%q); want one of %v", code, f.payload, codes)
		}
		if code == CloseGoingAway {
			t.Fatalf("the relay sent 1001 to a client")
		}
	}
	// The server closes the TCP connection after the close handshake.
	rc.c.Write(frame(true, 0, opClose, closeFrame(1000, ""), false))
	for {
		_, err := rc.readFrame(readBound)
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
				return
			}
			t.Fatalf("after the Close: %v; want the connection closed", err)
		}
	}
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return append(append([]byte{}, b[:40]...), "..."...)
	}
	return b
}
