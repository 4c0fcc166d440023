package fdpass

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzMsg is shaped like the messages zd programs exchange: nested maps,
// slices and strings, the parts a hostile length could inflate.
type fuzzMsg struct {
	V     int               `msgpack:"v"`
	Op    string            `msgpack:"op"`
	Names []string          `msgpack:"names"`
	Args  map[string]string `msgpack:"args"`
	FDs   []struct {
		Name  string `msgpack:"name"`
		Local string `msgpack:"local"`
	} `msgpack:"fds"`
}

// FuzzReadMsg feeds arbitrary frames to ReadMsg over a real socket: no
// panic, no allocation beyond the frame's size, and what decodes
// re-encodes to something that decodes the same.
func FuzzReadMsg(f *testing.F) {
	for _, m := range []fuzzMsg{
		{V: 1, Op: "take", Names: []string{"web", "ctl"}},
		{V: 1, Op: "ls", Args: map[string]string{"a": "b"}},
	} {
		b, _ := msgpack.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 1<<16 {
			return
		}
		a, b := pair(t)
		defer a.Close()
		defer b.Close()
		var lb [4]byte
		binary.BigEndian.PutUint32(lb[:], uint32(len(payload)))
		go func() {
			a.Write(append(lb[:], payload...))
			a.CloseWrite()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var m fuzzMsg
		if err := ReadMsg(ctx, b, 1<<16, &m); err != nil {
			return
		}
		enc, err := sortedMarshal(m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		var m2 fuzzMsg
		if err := msgpack.Unmarshal(enc, &m2); err != nil {
			t.Fatalf("decode(encode(%+v)): %v", m, err)
		}
		enc2, _ := sortedMarshal(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip differs")
		}
	})
}

func sortedMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	err := enc.Encode(v)
	return buf.Bytes(), err
}
