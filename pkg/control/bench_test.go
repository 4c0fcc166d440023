package control

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// BenchmarkCall measures a whole request: connect, peer check, frame both
// ways, handler, hang-up.
func BenchmarkCall(b *testing.B) {
	for _, size := range []int{16, 4096, 256 << 10} {
		b.Run(fmt.Sprintf("result=%d", size), func(b *testing.B) {
			dir := b.TempDir()
			srv, err := Listen(filepath.Join(dir, "b.sock"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			payload := strings.Repeat("x", size)
			go srv.Serve(context.Background(), func(ctx context.Context, req *Request, s Stream) (any, error) {
				return payload, nil
			})
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var out string
				if err := Call(ctx, srv.Path(), "status", nil, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStream measures events per second on one streaming request.
func BenchmarkStream(b *testing.B) {
	dir := b.TempDir()
	srv, err := Listen(filepath.Join(dir, "b.sock"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(context.Background(), func(ctx context.Context, req *Request, s Stream) (any, error) {
		var n int
		req.Decode(&n)
		ev := map[string]any{"worker": 3, "state": "ready"}
		for i := 0; i < n; i++ {
			if err := s.Send(ev); err != nil {
				return nil, err
			}
		}
		return n, nil
	})
	b.ReportAllocs()
	got := 0
	err = CallStream(context.Background(), srv.Path(), "watch", b.N, func(msgpack.RawMessage) error { got++; return nil }, nil)
	if err != nil || got != b.N {
		b.Fatalf("CallStream = %v, %d events; want %d", err, got, b.N)
	}
}

func BenchmarkReadFrame(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			var buf bytes.Buffer
			items := make([]map[string]any, n)
			for i := range items {
				items[i] = map[string]any{"slot": i, "state": "ready", "backend": "unix:///run/zd/web/w0.3.sock"}
			}
			WriteFrame(&buf, map[string]any{"v": 1, "result": items})
			frame := buf.Bytes()
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var v responseIn
				if err := ReadFrame(bytes.NewReader(frame), 0, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
