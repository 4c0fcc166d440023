package wsrelay

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReadFrames feeds arbitrary bytes to the frame reader in both roles,
// with and without permessage-deflate. It must never panic, every error
// must be a *CloseError with a code a Close frame may carry or a stream
// error, and every message read must survive a write-then-read round trip.
func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, uint8(0))
	f.Add(frame(false, 0, opText, []byte("frag"), false), uint8(0))
	f.Add(append(frame(false, 0, opText, []byte("\xce"), false), frame(true, 0, opContinuation, []byte("\xba"), false)...), uint8(0))
	f.Add(frame(true, rsv1, opBinary, deflateMsg([]byte("compressed compressed compressed")), false), uint8(2))
	f.Add(frame(true, 0, opClose, closeFrame(1000, "bye"), false), uint8(0))
	f.Add(frame(true, 0, opPing, []byte("p"), true), uint8(1))
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		var m msgReader
		m.expectMasked = mode&1 == 0
		m.deflate = mode&2 != 0
		m.maxMessage = 1 << 16
		m.fr.init(bytes.NewReader(data), nil)
		defer m.release()
		for range 1000 {
			msg, err := m.next()
			if err != nil {
				var ce *CloseError
				if errors.As(err, &ce) {
					if !validCloseCode(ce.Code) {
						t.Fatalf("CloseError code %d may not be sent", ce.Code)
					}
				} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if msg.op == opClose {
				if _, _, err := parseClose(msg.payload); err == nil {
					continue
				}
			}
			// Round trip: write what was read, read it back.
			var rsv byte
			p := msg.payload
			if m.deflate && !isControl(msg.op) {
				rsv, p = rsv1, deflateAppend(nil, msg.payload, 15)
			}
			enc := appendFrame(nil, true, rsv, msg.op, p, m.expectMasked)
			var m2 msgReader
			m2.expectMasked, m2.deflate, m2.maxMessage = m.expectMasked, m.deflate, m.maxMessage
			m2.fr.init(bytes.NewReader(enc), nil)
			got, err := m2.next()
			if err != nil || got.op != msg.op || !bytes.Equal(got.payload, msg.payload) {
				t.Fatalf("round trip of op %d (%d bytes): %v", msg.op, len(msg.payload), err)
			}
			m2.release()
		}
	})
}

func FuzzUTF8Prefix(f *testing.F) {
	f.Add([]byte("\xce\xba\xe1\xbd\xb9"), 3)
	f.Add([]byte("\xf4\x90\x80\x80"), 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		// Checking in two pieces agrees with checking the whole.
		n, ok := validUTF8Prefix(b[:cut])
		if ok {
			rest, ok2 := validUTF8Prefix(b[n:])
			whole, okw := validUTF8Prefix(b)
			if okw != ok2 || (ok2 && n+rest != whole) {
				t.Fatalf("split at %d: %d+%d,%v vs whole %d,%v", cut, n, rest, ok2, whole, okw)
			}
		}
	})
}

// FuzzResumeOffer feeds arbitrary Sec-WebSocket-Protocol values to the
// zd-resume decoder: no panic; a token read encodes back to itself; the
// other subprotocols never include a zd-resume one.
func FuzzResumeOffer(f *testing.F) {
	f.Add("chat, zd-resume.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("zd-resume.AAAAAAAAAAAAAAAAAAAAAA.123, chat")
	f.Add("zd-resume.AAAAAAAAAAAAAAAAAAAAAB.0")
	f.Add("zd-resume.AAAAAAAAAAAAAAAAAAAAAA.9007199254740992")
	f.Add("zd-resume.x.1,zd-resume.y")
	f.Add("zd-resume.AAAAAAAAAAAAAAAAAAAAAA.+1")
	f.Fuzz(func(t *testing.T, v string) {
		tok, rest, found, err := parseResumeOffer([]string{v})
		for _, p := range rest {
			if strings.HasPrefix(p, resumePrefix) {
				t.Fatalf("rest %q holds a zd-resume token", rest)
			}
		}
		if !found || err != nil {
			return
		}
		if len(tok.secret) < minSecretBytes || len(tok.secret) > maxSecretBytes || tok.received > maxResumeCount {
			t.Fatalf("token %+v out of bounds", tok)
		}
		enc := tok.String()
		tok2, rest2, found2, err := parseResumeOffer([]string{enc})
		if err != nil || !found2 || len(rest2) != 0 || tok2.String() != enc || !bytes.Equal(tok2.secret, tok.secret) {
			t.Fatalf("round trip of %q: %q, %v", enc, tok2.String(), err)
		}
		if !strings.Contains(v, enc) {
			t.Fatalf("token %q read from %q, which does not hold it", enc, v)
		}
	})
}
