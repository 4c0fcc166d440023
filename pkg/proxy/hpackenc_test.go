package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// hpackPeer is the client side of a connection: x/net's decoder, which
// checks every representation, index and table size update against RFC
// 7541, fed the blocks hpackEncoder writes.
type hpackPeer struct {
	dec *hpack.Decoder
	got []hpack.HeaderField
}

func newHpackPeer() *hpackPeer {
	p := &hpackPeer{}
	p.dec = hpack.NewDecoder(hpackDefaultTableSize, func(f hpack.HeaderField) {
		p.got = append(p.got, hpack.HeaderField{Name: f.Name, Value: f.Value})
	})
	return p
}

// block decodes one header block.
func (p *hpackPeer) block(b []byte) ([]hpack.HeaderField, error) {
	p.got = nil
	if _, err := p.dec.Write(b); err != nil {
		return nil, err
	}
	return p.got, p.dec.Close()
}

type hpackCase struct {
	status int
	fields []hpack.HeaderField
}

// encodeBlock writes a response header block the way encodeHeaders does.
func encodeBlock(e *hpackEncoder, status int, fields []hpack.HeaderField) []byte {
	b := e.begin(nil)
	b = e.status(b, status)
	for _, f := range fields {
		b = e.field(b, f.Name, hpackStaticName[f.Name], f.Value)
	}
	return b
}

func checkHpackRoundTrip(t *testing.T, e *hpackEncoder, p *hpackPeer, c hpackCase) int {
	t.Helper()
	b := encodeBlock(e, c.status, c.fields)
	got, err := p.block(b)
	if err != nil {
		t.Fatalf("decoding %x: %v", b, err)
	}
	want := append([]hpack.HeaderField{{Name: ":status", Value: fmt.Sprint(c.status)}}, c.fields...)
	if !slices.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	if e.size > e.maxSize {
		t.Fatalf("table holds %d bytes, over its size %d", e.size, e.maxSize)
	}
	return len(b)
}

func TestHpackEncoderRoundTrip(t *testing.T) {
	e, p := newHpackEncoder(), newHpackPeer()
	resp := func(status int, kv ...string) hpackCase {
		c := hpackCase{status: status}
		for i := 0; i < len(kv); i += 2 {
			c.fields = append(c.fields, hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return c
	}
	first := checkHpackRoundTrip(t, e, p, resp(200, "content-type", "text/plain; charset=utf-8",
		"server", "app/1.0", "date", "Wed, 25 Nov 2026 23:40:00 GMT", "content-length", "12",
		"x-custom", "a", "x-custom", "b"))
	// The same stable fields again: indexed now, so the block is small.
	second := checkHpackRoundTrip(t, e, p, resp(200, "content-type", "text/plain; charset=utf-8",
		"server", "app/1.0", "date", "Wed, 25 Nov 2026 23:40:01 GMT", "content-length", "13",
		"x-custom", "a", "x-custom", "b"))
	if second >= first-20 {
		t.Errorf("second block %d bytes, first %d: stable fields were not indexed", second, first)
	}
	for _, code := range []int{100, 103, 201, 204, 206, 301, 304, 400, 404, 418, 500, 503, 599} {
		checkHpackRoundTrip(t, e, p, resp(code, "content-type", "application/json"))
	}
	// A value that changes each time must not churn the table.
	n := len(e.dyn)
	for i := range 50 {
		checkHpackRoundTrip(t, e, p, resp(200, "etag", fmt.Sprintf(`"%d"`, i), "location", fmt.Sprint("/", i)))
	}
	if len(e.dyn) != n {
		t.Errorf("varying fields entered the table: %d entries, was %d", len(e.dyn), n)
	}
	// Enough distinct stable fields to evict, long values, names outside
	// the static table, empty values.
	for i := range 200 {
		checkHpackRoundTrip(t, e, p, resp(200, fmt.Sprint("x-h", i%37), strings.Repeat("v", i*7%300),
			"vary", "", "cache-control", fmt.Sprint("max-age=", i%5)))
	}
	// The peer shrinks the table, then allows it again: the size update
	// comes first in the next block, and the table stays within it.
	for _, size := range []uint32{100, 0, 4096, 64} {
		p.dec.SetAllowedMaxDynamicTableSize(size)
		e.setMaxSize(size)
		for range 3 {
			checkHpackRoundTrip(t, e, p, resp(200, "content-type", "text/html", "server", "s"))
		}
	}
	// A big integer (status line literal, long name): multi-byte prefixes.
	checkHpackRoundTrip(t, e, p, resp(200, strings.Repeat("n", 1000), strings.Repeat("v", 70000)))
}

// FuzzHpackEncoder encodes blocks of arbitrary fields, with table size
// changes between them, and decodes them with x/net's decoder: every block
// must come back exactly, and the table must stay within its size.
func FuzzHpackEncoder(f *testing.F) {
	f.Add([]byte("content-type\x00text/plain\x01date\x00x\x01\xffcontent-type\x00text/plain"))
	f.Add([]byte("x-a\x00\x01x-a\x00b\x02\x10x-a\x00b\x01\xfe"))
	f.Add([]byte("server\x00zd\x01set-cookie\x00a=b\x01server\x00zd\x01\xf0\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, p := newHpackEncoder(), newHpackPeer()
		var c hpackCase
		c.status = 200
		for _, rec := range strings.Split(string(data), "\x01") {
			// A record of one byte 0xf0-0xff ends the block; 0xf0 followed by
			// a byte sets the table size to that byte times 32.
			if len(rec) > 0 && rec[0] >= 0xf0 {
				checkHpackRoundTrip(t, e, p, c)
				c = hpackCase{status: 100 + int(rec[0])%500}
				if rec[0] == 0xf0 && len(rec) > 1 {
					size := uint32(rec[1]) * 32
					p.dec.SetAllowedMaxDynamicTableSize(size)
					e.setMaxSize(size)
				}
				continue
			}
			name, value, _ := strings.Cut(rec, "\x00")
			name = strings.ToLower(name)
			if name == "" || strings.HasPrefix(name, ":") {
				continue
			}
			c.fields = append(c.fields, hpack.HeaderField{Name: name, Value: value})
		}
		checkHpackRoundTrip(t, e, p, c)
	})
}
