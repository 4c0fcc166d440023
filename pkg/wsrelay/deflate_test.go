package wsrelay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
)

// TestNegotiateDeflate: the offers of Autobahn's 13.x groups and invalid
// ones; the answer always resets both contexts per message.
func TestNegotiateDeflate(t *testing.T) {
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	cases := []struct {
		offer string
		want  string // "" = declined
	}{
		{"permessage-deflate", base},
		{"permessage-deflate; client_max_window_bits", base},
		{"permessage-deflate; client_no_context_takeover", base},
		{"permessage-deflate; client_max_window_bits=8", base},
		{"permessage-deflate; client_max_window_bits=15; client_no_context_takeover", base},
		{"permessage-deflate; server_max_window_bits=9", base + "; server_max_window_bits=9"},
		{"permessage-deflate; server_no_context_takeover; server_max_window_bits=15", base + "; server_max_window_bits=15"},
		{`permessage-deflate; server_max_window_bits="10"`, base + "; server_max_window_bits=10"},
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate", base},
		{"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", base},
		{"permessage-deflate; server_max_window_bits=16", ""},
		{"permessage-deflate; server_max_window_bits", ""},
		{"permessage-deflate; client_max_window_bits=0", ""},
		{"permessage-deflate; server_no_context_takeover=1", ""},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", ""},
		{"permessage-deflate; unknown_param", ""},
		{"permessage-deflate; server_max_window_bits=010", ""},
		{"x-webkit-deflate-frame", ""},
	}
	for _, c := range cases {
		got, _, ok := negotiateDeflate([]string{c.offer})
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("negotiateDeflate(%q) = %q; want %q", c.offer, got, c.want)
		}
	}
}

// TestAutobahnCompression covers the 12.x and 13.x groups: messages of
// many sizes, compressed by the client (the standard library's flate),
// echoed through the relay and compressed by it towards the client, under
// each offer of 13.1-13.7.
func TestAutobahnCompression(t *testing.T) {
	be := startEcho(t, "z", false)
	rt := &router{}
	rt.set(be)
	_, url := startRelay(t, Config{MaxMessage: 1 << 20}, rt)
	offers := map[string]string{
		"13.1": "permessage-deflate",
		"13.2": "permessage-deflate; client_no_context_takeover",
		"13.3": "permessage-deflate; client_max_window_bits=8",
		"13.4": "permessage-deflate; client_max_window_bits=15",
		"13.5": "permessage-deflate; client_no_context_takeover; client_max_window_bits=8",
		"13.6": "permessage-deflate; server_max_window_bits=9; client_no_context_takeover",
		"13.7": "permessage-deflate; server_max_window_bits=8, permessage-deflate",
	}
	sizes := []int{16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072}
	rnd := rand.New(rand.NewPCG(1, 2))
	for id, offer := range offers {
		t.Run(id, func(t *testing.T) {
			rc := dialRaw(t, url+"/ws", http.Header{"Sec-Websocket-Extensions": {offer}})
			defer rc.c.Close()
			if ext := rc.resp.Header.Get("Sec-Websocket-Extensions"); ext == "" {
				t.Fatalf("offer %q: no extension accepted", offer)
			}
			for _, n := range sizes {
				// 12.x: text of few symbols (compresses) and random binary.
				msg := make([]byte, n)
				for i := range msg {
					msg[i] = "abcdef "[rnd.IntN(7)]
				}
				bin := make([]byte, n)
				for i := range bin {
					bin[i] = byte(rnd.Uint32())
				}
				for _, m := range []struct {
					op byte
					p  []byte
				}{{opText, msg}, {opBinary, bin}} {
					rc.write(frame(true, rsv1, m.op, deflateMsg(m.p), false), 0)
					rc.write(frame(true, 0, m.op, m.p, false), 0) // and uncompressed
					for range 2 {
						got, err := rc.readMessage(readBound)
						if err != nil {
							t.Fatalf("size %d: %v", n, err)
						}
						if got.op != m.op || !bytes.Equal(got.payload, m.p) {
							t.Fatalf("size %d: echo differs (op %d, %d bytes)", n, got.op, len(got.payload))
						}
					}
				}
			}
			// Fragmented compressed message: RSV1 on the first frame only.
			z := deflateMsg(bytes.Repeat([]byte("fragmented "), 500))
			rc.write(frame(false, rsv1, opText, z[:len(z)/2], false), 0)
			rc.write(frame(true, 0, opContinuation, z[len(z)/2:], false), 0)
			got, err := rc.readMessage(readBound)
			if err != nil || string(got.payload) != string(bytes.Repeat([]byte("fragmented "), 500)) {
				t.Fatalf("fragmented compressed message: %v", err)
			}
			rc.write(frame(true, 0, opClose, closeFrame(1000, ""), false), 0)
			expectClosed(t, rc, []uint16{1000})
		})
	}
}

// TestCompressionBadInput: corrupt deflate data gets 1007, a bomb 1009,
// RSV1 on a continuation 1002.
func TestCompressionBadInput(t *testing.T) {
	be := startEcho(t, "zb", false)
	rt := &router{}
	rt.set(be)
	_, url := startRelay(t, Config{MaxMessage: 64 << 10}, rt)
	hdr := http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}
	for _, c := range []struct {
		name   string
		frames [][]byte
		code   uint16
	}{
		{"corrupt", [][]byte{frame(true, rsv1, opBinary, []byte{0xff, 0xff, 0xff, 0xff, 0x00}, false)}, CloseInvalidPayload},
		{"bomb", [][]byte{frame(true, rsv1, opBinary, deflateMsg(make([]byte, 1<<20)), false)}, CloseTooBig},
		{"rsv1-continuation", [][]byte{frame(false, 0, opText, []byte("a"), false), frame(true, rsv1, opContinuation, []byte("b"), false)}, CloseProtocolError},
		{"invalid-utf8-inflated", [][]byte{frame(true, rsv1, opText, deflateMsg([]byte("ok\xff")), false)}, CloseInvalidPayload},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, url+"/ws", hdr)
			defer rc.c.Close()
			for _, f := range c.frames {
				rc.write(f, 0)
			}
			expectClosed(t, rc, []uint16{c.code})
		})
	}
}

func TestDeflateRoundTrip(t *testing.T) {
	for bits := 8; bits <= 15; bits++ {
		for _, n := range []int{0, 1, 100, 70000} {
			p := bytes.Repeat([]byte(fmt.Sprint(n)), n/len(fmt.Sprint(n))+1)[:n]
			z := deflateAppend(nil, p, bits)
			out := getBuf()
			if err := inflate(out, z, 1<<20); err != nil || !bytes.Equal(*out, p) {
				t.Fatalf("bits %d size %d: round trip: %v", bits, n, err)
			}
			putBuf(out)
		}
	}
}
