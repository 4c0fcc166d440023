package queue

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// codec compresses held bodies for overflow Compress. EncodeAll and
// DecodeAll are safe for concurrent use and start no goroutines, so one
// codec serves the whole buffer and needs no Close.
type codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func newCodec() *codec {
	// Both constructors only fail on invalid options, and these are fixed.
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(fmt.Sprintf("queue: zstd encoder: %v", err))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(fmt.Sprintf("queue: zstd decoder: %v", err))
	}
	return &codec{enc: enc, dec: dec}
}

func (c *codec) encode(src []byte) []byte {
	return c.enc.EncodeAll(src, make([]byte, 0, len(src)/2))
}

// decode decompresses src, which must decode to exactly rawLen bytes.
func (c *codec) decode(src []byte, rawLen int) ([]byte, error) {
	out, err := c.dec.DecodeAll(src, make([]byte, 0, rawLen))
	if err != nil {
		return nil, err
	}
	if len(out) != rawLen {
		return nil, fmt.Errorf("decoded %d bytes, want %d", len(out), rawLen)
	}
	return out, nil
}
