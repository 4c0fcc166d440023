package testscripts

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/zdtools/zd/pkg/snapshot"
)

// cmdGenRecords writes N mixed snapshot records as JSON lines, as an app
// would hand them to zd-snapshot pack: genrecords N FILE.
func cmdGenRecords(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: genrecords N FILE")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	f, err := os.Create(ts.MkAbs(args[1]))
	ts.Check(err)
	defer f.Close()
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for i := range n {
		var r map[string]any
		switch i % 10 {
		case 7:
			r = map[string]any{"kind": "http-request", "id": fmt.Sprintf("req-%d", i), "protocol": "h2", "state": "held",
				"worker": 4000 + i%4, "method": "POST", "target": fmt.Sprintf("/api/orders/%d", i), "stream_id": 2*i + 1,
				"headers": []map[string]string{{"name": "Host", "value": "shop.example"}, {"name": "Authorization", "value": "Bearer t0ken"}},
				"body":    "eyJpdGVtIjo0Mn0=", "priority": i % 3, "created": "2026-12-01T20:00:00.5Z"}
		case 8:
			r = map[string]any{"kind": "tcp-conn", "id": fmt.Sprintf("tcp-%d", i), "protocol": "tcp", "state": "idle",
				"worker": 4000 + i%4, "remote": "[2001:db8::7]:40000", "bytes_in": 1 << 20, "pending_out": "cGFydGlhbA=="}
		case 9:
			r = map[string]any{"kind": "worker", "id": fmt.Sprintf("worker-%d", i), "worker": 4000 + i%4, "generation": 7,
				"slot": i % 4, "state": "ready", "release": "/srv/app/releases/7/bin/app"}
		default:
			r = map[string]any{"kind": "ws-session", "id": fmt.Sprintf("ws-%d", i), "protocol": []string{"ws", "ws-h2", "ws-h3"}[i%3],
				"state": []string{"active", "idle", "closing"}[i%3], "worker": 4000 + i%4, "generation": 7,
				"remote": fmt.Sprintf("198.51.100.%d:%d", i%250, 30000+i%30000), "backend": "127.0.0.1:9001",
				"created": fmt.Sprintf("2026-12-01T19:%02d:%02dZ", (i/60)%60, i%60), "target": fmt.Sprintf("/chat/room-%d", i%50),
				"subprotocol": "chat.v2", "extensions": []string{"permessage-deflate"},
				"headers": []map[string]string{{"name": "Host", "value": "chat.example"}, {"name": "Cookie", "value": "session=abc123"}},
				"msgs_in": i * 3, "msgs_out": i * 5, "bytes_in": i * 300, "bytes_out": i * 700,
				"attrs": map[string]string{"user": fmt.Sprintf("u%d", i%1000), "room": strconv.Itoa(i % 50)}}
		}
		ts.Check(enc.Encode(r))
	}
	ts.Check(bw.Flush())
}

// cmdDamage writes a damaged copy of a snapshot: damage IN OUT ACTION...
//
//	flip REGION [CHUNK|end]  flip one byte in the middle of the region (Layout's names)
//	cut chunk N | mid N | end  cut at the start of chunk N, inside its body, or before the end marker
//	swap N M                 swap data chunks N and M
//	version V                set the format version (prefix CRC fixed, so only the version is wrong)
//	badkind                  in a plain, uncompressed file: rename the first record's kind and
//	                         reseal chunk 0, as a writer with another schema would
func cmdDamage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: damage IN OUT flip|cut|swap|version|badkind ...")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	regions, err := snapshot.Layout(bytes.NewReader(b))
	ts.Check(err)
	find := func(name, chunk string) snapshot.Region {
		for _, g := range regions {
			if g.Name != name {
				continue
			}
			switch {
			case chunk == "" && g.Chunk < 0, chunk == "end" && g.End, !g.End && g.Chunk >= 0 && chunk == strconv.Itoa(g.Chunk):
				return g
			}
		}
		ts.Fatalf("no region %s %s", name, chunk)
		return snapshot.Region{}
	}
	chunkSpan := func(n string) (int, int) {
		start := find("frame", n).Offset
		next, err := strconv.Atoi(n)
		ts.Check(err)
		end := len(b)
		for _, g := range regions {
			if g.Name == "frame" && (g.Chunk == next+1 || g.End) && g.Offset > start {
				end = g.Offset
				break
			}
		}
		return start, end
	}
	act := args[2:]
	switch act[0] {
	case "flip":
		chunk := ""
		if len(act) > 2 {
			chunk = act[2]
		}
		g := find(act[1], chunk)
		b[g.Offset+g.Size/2] ^= 0x20
	case "cut":
		switch act[1] {
		case "chunk":
			b = b[:find("frame", act[2]).Offset]
		case "mid":
			g := find("body", act[2])
			b = b[:g.Offset+g.Size/2]
		case "end":
			b = b[:find("frame", "end").Offset]
		}
	case "swap":
		s0, e0 := chunkSpan(act[1])
		s1, e1 := chunkSpan(act[2])
		var out []byte
		out = append(out, b[:s0]...)
		out = append(out, b[s1:e1]...)
		out = append(out, b[e0:s1]...)
		out = append(out, b[s0:e0]...)
		b = append(out, b[e1:]...)
	case "version":
		v, err := strconv.Atoi(act[1])
		ts.Check(err)
		binary.BigEndian.PutUint16(b[8:], uint16(v))
		binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crc32.MakeTable(crc32.Castagnoli)))
	case "badkind":
		// Independent of pkg/snapshot's code: the tag of a plain chunk as
		// docs/snapshot-format.md defines it.
		hlen := int(binary.BigEndian.Uint32(b[12:]))
		digest := sha256.Sum256(b[:20+hlen])
		body, tag := find("body", "0"), find("tag", "0")
		payload := b[body.Offset : body.Offset+body.Size]
		i := bytes.Index(payload, []byte("ws-session"))
		if i < 0 {
			ts.Fatalf("badkind: no ws-session in chunk 0 (a compressed file?)")
		}
		copy(payload[i:], "ws-sessiox")
		h := sha256.New()
		h.Write(digest[:])
		h.Write([]byte{'D', 0, 0, 0, 0})
		h.Write(payload)
		copy(b[tag.Offset:], h.Sum(nil)[:16])
	default:
		ts.Fatalf("damage: unknown action %q", strings.Join(act, " "))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o600))
}
