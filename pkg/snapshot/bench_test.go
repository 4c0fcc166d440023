package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEncode is serialization alone: records to msgpack, the
// origin's "serialization rate" (281,000/s).
func BenchmarkEncode(b *testing.B) {
	recs := make([]*Record, 1000)
	for i := range recs {
		recs[i] = sample(i)
	}
	b.ReportAllocs()
	var buf []byte
	size := 0
	cpu := cpuTime()
	for i := 0; b.Loop(); i++ {
		buf = recs[i%len(recs)].AppendMsgpack(buf[:0], false)
		size += len(buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(size)/float64(b.N), "B/record")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/record")
}

// BenchmarkEncodeParallel encodes on every core, each goroutine with its
// own buffer, as zd-queue's per-connection dumps would.
func BenchmarkEncodeParallel(b *testing.B) {
	recs := make([]*Record, 1000)
	for i := range recs {
		recs[i] = sample(i)
	}
	b.ReportAllocs()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for i := 0; pb.Next(); i++ {
			buf = recs[i%len(recs)].AppendMsgpack(buf[:0], false)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/record")
}

// BenchmarkWrite is the whole writer: validate, encode, compress, seal and
// write, for n records per snapshot.
func BenchmarkWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  Options
	}{
		{"plain", Options{Compression: CompressOff}},
		{"zstd", Options{}},
		{"aes", Options{Key: testKey, Compression: CompressOff}},
		{"zstd+aes", Options{Key: testKey}},
	} {
		for _, n := range []int{1000, 10000, 100000} {
			recs := make([]*Record, min(n, 10000))
			for i := range recs {
				recs[i] = sample(i)
			}
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				var size int
				cpu := cpuTime()
				for b.Loop() {
					cw := &countWriter{}
					w, err := NewWriter(cw, c.opt)
					if err != nil {
						b.Fatal(err)
					}
					for i := range n {
						if err := w.Write(recs[i%len(recs)]); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					size = cw.n
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(size), "file-bytes")
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N*n), "cpu-ns/record")
			})
		}
	}
}

// wsSession is a WebSocket session record as zd-queue's relay would dump it.
func wsSession(i int) *Record {
	r := sample(i - i%10) // every sample whose index ends in 0 is a ws-session
	r.ID = fmt.Sprintf("ws-%d", i)
	return r
}

// BenchmarkConnections1000 is the origin's "1000+ connection serialization
// (< 1 second)": 1,000 WebSocket sessions into a sealed, compressed
// snapshot in memory, start to end marker.
func BenchmarkConnections1000(b *testing.B) {
	recs := make([]*Record, 1000)
	for i := range recs {
		recs[i] = wsSession(i)
	}
	b.ReportAllocs()
	cpu := cpuTime()
	var size int
	for b.Loop() {
		cw := &countWriter{}
		w, err := NewWriter(cw, Options{Key: testKey})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		size = cw.n
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(size), "file-bytes")
}

// BenchmarkSessionSize reports the size of a 10,000-session snapshot by
// compression level, plain and encrypted.
func BenchmarkSessionSize(b *testing.B) {
	recs := make([]*Record, 10000)
	for i := range recs {
		recs[i] = wsSession(i)
	}
	for _, c := range []Compression{CompressOff, CompressFastest, CompressDefault, CompressBest} {
		for _, key := range [][]byte{nil, testKey} {
			b.Run(fmt.Sprintf("compress=%v/encrypted=%v", c, key != nil), func(b *testing.B) {
				var size int
				for b.Loop() {
					cw := &countWriter{}
					w, _ := NewWriter(cw, Options{Key: key, Compression: c})
					for _, r := range recs {
						w.Write(r)
					}
					w.Close()
					size = cw.n
				}
				b.ReportMetric(float64(size), "file-bytes")
				b.ReportMetric(float64(size)/float64(len(recs)), "B/session")
			})
		}
	}
}

// BenchmarkRead reads a snapshot of n records back.
func BenchmarkRead(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  Options
	}{{"plain", Options{Compression: CompressOff}}, {"zstd+aes", Options{Key: testKey}}} {
		for _, n := range []int{1000, 100000} {
			file := write(b, n, c.opt)
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					r, err := NewReader(bytes.NewReader(file), testKey)
					if err != nil {
						b.Fatal(err)
					}
					var rec Record
					for {
						if err := r.Read(&rec); err == io.EOF {
							break
						} else if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N*n), "cpu-ns/record")
			})
		}
	}
}

// BenchmarkPackMemory writes 1,000,000 records and reports the heap in use
// at the end: it stays at about one chunk, whatever n.
func BenchmarkPackMemory(b *testing.B) {
	for _, n := range []int{10000, 1000000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				w, err := NewWriter(io.Discard, Options{Key: testKey})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					if err := w.Write(sample(i)); err != nil {
						b.Fatal(err)
					}
					if i%100000 == 99999 {
						var m runtime.MemStats
						runtime.ReadMemStats(&m)
						peak = max(peak, m.HeapInuse)
					}
				}
				w.Close()
			}
			b.ReportMetric(float64(peak)/(1<<20), "heap-inuse-MB")
		})
	}
}

// cpuTime is the CPU time this process has used: on a shared machine the
// wall clock of a benchmark says as much about the neighbours as about the
// code, so benchmarks report CPU time per record too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }
