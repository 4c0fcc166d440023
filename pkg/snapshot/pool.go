package snapshot

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstd encoders and decoders cost about a megabyte and a millisecond to
// make, more than a thousand records cost to write: they are kept for the
// next Writer or Reader. EncodeAll and DecodeAll keep no state between
// calls, so a pooled one is as good as new.
type encKey struct {
	level  zstd.EncoderLevel
	window int
}

var (
	encPools sync.Map // encKey -> *sync.Pool of *zstd.Encoder
	decPool  sync.Pool
	bufPool  sync.Pool // *[]byte chunk buffers
)

func getEncoder(level zstd.EncoderLevel, window int) (*zstd.Encoder, error) {
	p, _ := encPools.LoadOrStore(encKey{level, window}, &sync.Pool{})
	if e, ok := p.(*sync.Pool).Get().(*zstd.Encoder); ok {
		return e, nil
	}
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(window), zstd.WithEncoderCRC(false))
}

func putEncoder(e *zstd.Encoder, level zstd.EncoderLevel, window int) {
	if p, ok := encPools.Load(encKey{level, window}); ok {
		p.(*sync.Pool).Put(e)
	}
}

func getDecoder() (*zstd.Decoder, error) {
	if d, ok := decPool.Get().(*zstd.Decoder); ok {
		return d, nil
	}
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxChunk),
		zstd.WithDecoderMaxWindow(maxChunk))
}

func putDecoder(d *zstd.Decoder) { decPool.Put(d) }

// getBuf returns an empty buffer with at least n bytes of capacity.
func getBuf(n int) []byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, n)
}

func putBuf(b []byte) {
	if cap(b) <= 4*defaultChunk {
		b = b[:0]
		bufPool.Put(&b)
	}
}
