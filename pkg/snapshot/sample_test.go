package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

var t0 = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

// sample is record i of a mixed snapshot: mostly WebSocket sessions, some
// held requests, TCP connections, a listener and workers, every field used
// by some record.
func sample(i int) *Record {
	w := 4000 + i%4
	switch i % 10 {
	case 7:
		return &Record{Kind: KindHTTPRequest, ID: fmt.Sprintf("req-%d", i), Protocol: "h2", State: StateHeld,
			Worker: w, Remote: "203.0.113.9:51234", Backend: "127.0.0.1:9001", Created: t0.Add(-time.Duration(i) * time.Millisecond),
			Method: "POST", Target: "/api/orders?id=" + fmt.Sprint(i), StreamID: uint64(2*i + 1),
			Headers: []HeaderField{{"Host", "shop.example"}, {"Authorization", "Bearer secret-token"}, {"Content-Type", "application/json"}},
			Body:    []byte(`{"item":42,"qty":1}`), Priority: i % 3, BytesIn: 512}
	case 8:
		return &Record{Kind: KindTCPConn, ID: fmt.Sprintf("tcp-%d", i), Protocol: "tcp", State: StateIdle, Worker: w,
			Remote: "[2001:db8::7]:40000", Local: "[::1]:8443", Created: t0.Add(-time.Hour), LastActive: t0.Add(-time.Minute),
			BytesIn: 1 << 20, BytesOut: 3 << 20, PendingOut: []byte("partial response")}
	case 9:
		if i%20 == 9 {
			return &Record{Kind: KindListener, ID: fmt.Sprintf("ln-%d", i), Network: "tcp", Local: "127.0.0.1:8080",
				FD: 3, Name: "web", State: StateListening}
		}
		return &Record{Kind: KindWorker, ID: fmt.Sprintf("worker-%d", i), Worker: w, Generation: 7, Slot: i % 4,
			State: StateReady, Release: "/srv/app/releases/7/bin/app", Status: "serving", Created: t0.Add(-10 * time.Minute)}
	}
	r := &Record{Kind: KindWSSession, ID: fmt.Sprintf("ws-%d", i), Protocol: "ws", State: StateActive, Worker: w,
		Generation: 7, Remote: fmt.Sprintf("198.51.100.%d:%d", i%250, 30000+i%30000), Local: "127.0.0.1:8080",
		Backend: "127.0.0.1:9001", Created: t0.Add(-time.Duration(i%3600) * time.Second), LastActive: t0.Add(-time.Second),
		Target: "/chat/room-" + fmt.Sprint(i%50), Subprotocol: "chat.v2", Extensions: []string{"permessage-deflate"},
		Headers: []HeaderField{{"Host", "chat.example"}, {"Cookie", "session=abc123"}, {"User-Agent", "Mozilla/5.0"},
			{"Sec-WebSocket-Version", "13"}},
		MsgsIn: uint64(i * 3), MsgsOut: uint64(i * 5), BytesIn: uint64(i * 300), BytesOut: uint64(i * 700),
		Attrs: map[string]string{"user": fmt.Sprintf("u%d", i%1000), "room": fmt.Sprint(i % 50)}}
	switch i % 10 {
	case 1:
		r.State = StateIdle
	case 2:
		r.Protocol, r.StreamID = "ws-h2", uint64(2*i+1)
	case 3:
		r.Protocol, r.StreamID, r.QUICConnIDs = "ws-h3", uint64(4*i), []string{"8394c8f03e515708", "1a2b3c4d"}
	case 4:
		r.State, r.PendingIn = StateClosing, []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}
	}
	return r
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
