package zdsnapshot

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// BenchmarkInspect100k runs zd-snapshot inspect, in-process, on a sealed
// and compressed file of 100,000 records (target: under 1 s).
func BenchmarkInspect100k(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "s.zds")
	key := snapshot.GenerateKey()
	fw, err := snapshot.Create(path, snapshot.Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	for i := range 100000 {
		fw.Write(&snapshot.Record{Kind: snapshot.KindWSSession, ID: fmt.Sprintf("ws-%d", i), Protocol: "ws",
			State: []snapshot.State{snapshot.StateActive, snapshot.StateIdle}[i%2], Worker: 4000 + i%4,
			Remote: fmt.Sprintf("198.51.100.%d:%d", i%250, 30000+i%30000), Created: t0.Add(-time.Duration(i) * time.Millisecond),
			Target: "/chat", Subprotocol: "chat.v2", Headers: []snapshot.HeaderField{{Name: "Host", Value: "chat.example"}, {Name: "Cookie", Value: "s=1"}},
			MsgsIn: uint64(i), MsgsOut: uint64(i), Attrs: map[string]string{"user": fmt.Sprint(i % 1000)}})
	}
	if err := fw.Close(); err != nil {
		b.Fatal(err)
	}
	io := cmdkit.IO{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard,
		Getenv: func(k string) string {
			if k == "ZD_SNAPSHOT_KEY" {
				return snapshot.FormatKey(key)
			}
			return ""
		}}
	b.ResetTimer()
	for b.Loop() {
		if code := Main(context.Background(), []string{"zd-snapshot", "inspect", path}, io); code != 0 {
			b.Fatalf("inspect exit %d", code)
		}
	}
}
