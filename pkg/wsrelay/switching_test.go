package wsrelay

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

var testAccept = AcceptKey(testKey)

// answerSeeds are backends' answers to a handshake with testKey: the
// plain form the in-place parser takes, and what it leaves to net/http.
var answerSeeds = []string{
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-accept:" + testAccept + "  \r\nSec-WebSocket-Protocol: chat\r\nDate: x\r\n\r\n\x81\x02hi",
	"HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Protocol: echo\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Accept: other\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Extensions:\r\nSec-WebSocket-Extensions: x\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Protocol: other\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: " + testAccept + "\n\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection:\r\n Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade : websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Bad: a\x01b\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX(y): z\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n",
	"HTTP/1.1 1010 Switching Protocols\r\n\r\n",
	"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: no\r\n\r\nnope",
	"HTTP/1.1 503 Busy\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
	"garbage\r\n\r\n",
	"",
}

// answerReq offers the subprotocols chat and echo.
var answerReq = &Request{Header: http.Header{"Sec-Websocket-Protocol": {"chat, echo"}}}

// readBoth reads answer with the in-place parser allowed (as a re-attach
// does) and with net/http only (as a first attach does), and says what each
// made of it: the subprotocol or the error, then the bytes left after it.
func readBoth(answer string) (fast, slow string) {
	read := func(header bool) string {
		br := bufio.NewReaderSize(strings.NewReader(answer), 4096)
		proto, _, err := readAnswer(br, []byte(testKey), answerReq, header)
		rest, _ := io.ReadAll(br)
		if err != nil {
			return fmt.Sprintf("error %v", err)
		}
		return fmt.Sprintf("proto %q, then %q", proto, rest)
	}
	return read(false), read(true)
}

func TestReadAnswerInPlaceAsNetHTTP(t *testing.T) {
	for _, a := range answerSeeds {
		fast, slow := readBoth(a)
		if fast != slow {
			t.Errorf("readAnswer(%q): in place %s; net/http %s", a, fast, slow)
		}
	}
	// The plain 101 is parsed in place (else the fast path is gone).
	var f switchFields
	head, ok := peekHead(bufio.NewReader(strings.NewReader(answerSeeds[1])))
	if !ok || !parse101(head, &f) || string(f.protocol) != "chat" {
		t.Errorf("peekHead, parse101 of %q: ok %v, protocol %q; want it parsed, chat", answerSeeds[1], ok, f.protocol)
	}
}

// An answer whose head is longer than the buffer goes to net/http whole.
func TestReadAnswerLongHead(t *testing.T) {
	long := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Long: " +
		strings.Repeat("a", 5000) + "\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\nafter"
	fast, slow := readBoth(long)
	if fast != slow || !strings.HasSuffix(fast, `then "after"`) {
		t.Errorf("long head: in place %s; net/http %s; want both the same, then \"after\"", fast, slow)
	}
}

func FuzzReadAnswer(f *testing.F) {
	for _, a := range answerSeeds {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		fast, slow := readBoth(answer)
		if fast != slow {
			t.Errorf("readAnswer(%q): in place %s; net/http %s", answer, fast, slow)
		}
	})
}

func TestAcceptKeyInPlace(t *testing.T) {
	var got [28]byte
	acceptKey(got[:], []byte(testKey))
	if want := "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; !bytes.Equal(got[:], []byte(want)) || AcceptKey(testKey) != want {
		t.Errorf("acceptKey(%q) = %q, AcceptKey = %q; want %q (RFC 6455 section 1.3)", testKey, got, AcceptKey(testKey), want)
	}
	// A key longer than the usual 24 characters is hashed whole.
	long := testKey + "extra"
	h := sha1.Sum([]byte(long + acceptGUID))
	if want := base64.StdEncoding.EncodeToString(h[:]); AcceptKey(long) != want {
		t.Errorf("AcceptKey(%q) = %q; want %q", long, AcceptKey(long), want)
	}
}
