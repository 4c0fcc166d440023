package snapshot

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// Compression is the zstd level of a Writer's chunks, or none.
type Compression int

// The zero Compression is zstd's fastest level: smallest cost, and about
// ten times smaller files of records like these.
const (
	CompressFastest Compression = iota
	CompressOff
	CompressDefault
	CompressBetter
	CompressBest
)

var compressionNames = map[Compression]string{CompressFastest: "fastest", CompressOff: "off",
	CompressDefault: "default", CompressBetter: "better", CompressBest: "best"}

func (c Compression) String() string { return compressionNames[c] }

// ParseCompression reads a --compress value: off (also false, no, 0,
// none), on (also true, yes, 1, fastest), default, better or best.
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "false", "no", "0", "none":
		return CompressOff, nil
	case "on", "true", "yes", "1", "fastest", "":
		return CompressFastest, nil
	case "default":
		return CompressDefault, nil
	case "better":
		return CompressBetter, nil
	case "best":
		return CompressBest, nil
	}
	return 0, fmt.Errorf("compression %q: want off, on, fastest, default, better or best", s)
}

// Options configure a Writer.
type Options struct {
	// Key encrypts the file (AES-256-GCM) when set; it must be KeySize
	// bytes. Without a key the file is plain, and credential headers
	// (Cookie, Authorization, Proxy-Authorization) are written as Redacted.
	Key         []byte
	Compression Compression
	Writer      string    // who writes it, for the header (default "pkg/snapshot")
	Generation  uint64    // the writer's generation, for the header
	Records     int64     // the record count, if known up front (declared in the header); 0: unknown
	ChunkSize   int       // plaintext bytes per chunk (default 256 KiB, at most 64 MiB)
	Created     time.Time // default now
}

// Writer streams records into a snapshot: it holds at most three chunks in
// memory, whatever the number of records. Write records, then Close. A
// Writer owns a goroutine until Close (or a FileWriter's Abort) returns; one
// whose Close was not called leaves a file without its end marker, which
// every reader refuses as truncated.
type Writer struct {
	w       io.Writer
	h       Header
	s       *sealer
	zenc    *zstd.Encoder
	zlevel  zstd.EncoderLevel
	zwindow int
	redact  bool
	chunk   []byte // array32 header, then the records of the current chunk
	n       int    // records in chunk
	index   uint32 // of the next chunk
	total   int64
	comp    []byte
	out     []byte
	err     error // sticky: the first write error
	closed  bool

	// The sealing stage: one goroutine compresses, seals and writes each
	// full chunk while the caller fills the next, so a writer uses two
	// cores. It holds at most two chunks (one queued, one in hand). Only
	// it touches zenc, s, w, index, comp and out until it has ended.
	jobs    chan []byte
	failed  chan struct{} // closed when the stage fails; serr says why
	serr    error
	stage   sync.WaitGroup
	stopped bool
}

const maxRecord = maxChunk - 1<<20

var errClosed = errors.New("snapshot writer is closed")

// NewWriter writes the prefix and header of a new snapshot to w and returns
// a Writer for its records. It fails only for a bad key or option, or when
// w fails.
func NewWriter(w io.Writer, opt Options) (*Writer, error) {
	if opt.Key != nil && len(opt.Key) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(opt.Key), KeySize)
	}
	if opt.ChunkSize <= 0 {
		opt.ChunkSize = defaultChunk
	}
	if opt.ChunkSize > maxChunk/2 {
		return nil, fmt.Errorf("chunk size %d: at most %d", opt.ChunkSize, maxChunk/2)
	}
	if opt.Created.IsZero() {
		opt.Created = time.Now()
	}
	if opt.Writer == "" {
		opt.Writer = "pkg/snapshot"
	}
	if _, ok := compressionNames[opt.Compression]; !ok {
		return nil, fmt.Errorf("unknown compression %d", opt.Compression)
	}
	sw := &Writer{w: w, redact: opt.Key == nil}
	sw.h = Header{
		Version: Version, Schema: Schema, Created: opt.Created.UTC(), Writer: opt.Writer,
		Generation: opt.Generation, Records: -1, Codec: CodecNone, Cipher: CipherNone,
		ChunkSize: opt.ChunkSize, Redacted: opt.Key == nil, FileID: make([]byte, fileIDSize),
	}
	if opt.Records > 0 {
		sw.h.Records = opt.Records
	}
	rand.Read(sw.h.FileID)
	if opt.Compression != CompressOff {
		lv := map[Compression]zstd.EncoderLevel{CompressFastest: zstd.SpeedFastest, CompressDefault: zstd.SpeedDefault,
			CompressBetter: zstd.SpeedBetterCompression, CompressBest: zstd.SpeedBestCompression}[opt.Compression]
		var err error
		sw.zlevel, sw.zwindow = lv, windowFor(opt.ChunkSize)
		if sw.zenc, err = getEncoder(lv, sw.zwindow); err != nil {
			return nil, err
		}
		sw.h.Codec, sw.h.Level = CodecZstd, opt.Compression.String()
	}
	if opt.Key != nil {
		sw.h.Cipher, sw.h.KeyID = CipherAESGCM, KeyID(opt.Key)
	}
	head, digest, err := encodeHeader(&sw.h)
	if err != nil {
		return nil, err
	}
	if sw.s, err = newSealer(opt.Key, sw.h.FileID, digest); err != nil {
		return nil, err
	}
	if _, err := w.Write(head); err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", err)
	}
	sw.chunk = sw.newChunk()
	sw.comp, sw.out = getBuf(0), getBuf(0)
	sw.jobs, sw.failed = make(chan []byte, 1), make(chan struct{})
	sw.stage.Add(1)
	go sw.run()
	return sw, nil
}

// windowFor is the zstd window for chunks of size n: the chunk itself, as
// a power of two within zstd's limits (a chunk never refers to another).
func windowFor(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < maxChunk {
		w <<= 1
	}
	return w
}

// Header is the header written.
func (w *Writer) Header() Header { return w.h }

// Count is the number of records written so far.
func (w *Writer) Count() int64 { return w.total + int64(w.n) }

// Write appends r to the snapshot. r must be valid (Validate); an invalid
// record is refused with an error wrapping ErrSchema and nothing is
// written. Other errors come from the underlying writer and are sticky.
func (w *Writer) Write(r *Record) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errClosed
	}
	if err := r.validateButAttrs(); err != nil {
		return err
	}
	start := len(w.chunk)
	var ok bool
	w.chunk, ok = r.appendMsgpack(w.chunk, w.redact)
	if !ok {
		w.chunk = w.chunk[:start]
		return errBadAttr
	}
	if size := len(w.chunk) - start; size > maxRecord {
		w.chunk = w.chunk[:start]
		return schemaError("record", "%d bytes encoded, more than %d", size, maxRecord)
	}
	if len(w.chunk) > maxChunk && w.n > 0 {
		// This record does not fit: flush the chunk without it and start
		// the next one with it.
		rec := append([]byte(nil), w.chunk[start:]...)
		w.chunk = w.chunk[:start]
		if err := w.flush(); err != nil {
			return err
		}
		w.chunk = append(w.chunk, rec...)
	}
	w.n++
	if len(w.chunk) >= w.h.ChunkSize {
		return w.flush()
	}
	return nil
}

// newChunk is an empty chunk: room for its array header and ChunkSize.
func (w *Writer) newChunk() []byte {
	return append(getBuf(w.h.ChunkSize+w.h.ChunkSize/8), 0, 0, 0, 0, 0)
}

// run is the sealing stage.
func (w *Writer) run() {
	defer w.stage.Done()
	for plain := range w.jobs {
		if w.serr == nil {
			if err := w.emit(typeData, plain); err != nil {
				w.serr = err
				close(w.failed)
			}
		}
		putBuf(plain)
	}
}

// stop ends the sealing stage once it has written what it was given.
func (w *Writer) stop() error {
	if !w.stopped {
		w.stopped = true
		close(w.jobs)
		w.stage.Wait()
	}
	return w.serr
}

// setCount writes the chunk's array32 header: its record count.
func (w *Writer) setCount() {
	w.chunk[0] = 0xdd
	binary.BigEndian.PutUint32(w.chunk[1:], uint32(w.n))
}

// flush hands the current chunk to the sealing stage.
func (w *Writer) flush() error {
	if w.n == 0 {
		return nil
	}
	w.setCount()
	select {
	case w.jobs <- w.chunk:
	case <-w.failed:
		w.err = w.serr
		return w.err
	}
	w.total += int64(w.n)
	w.n = 0
	w.chunk = w.newChunk()
	return nil
}

// emit compresses, seals and writes one chunk of type typ.
func (w *Writer) emit(typ byte, plain []byte) error {
	payload := plain
	if w.zenc != nil {
		w.comp = w.zenc.EncodeAll(plain, w.comp[:0])
		payload = w.comp
	}
	n := len(payload) + w.s.overhead()
	w.out = appendFrame(w.out[:0], frame{typ: typ, index: w.index, length: uint32(n)})
	w.out = w.s.seal(w.out, typ, w.index, payload)
	if _, err := w.w.Write(w.out); err != nil {
		return fmt.Errorf("write snapshot chunk %d: %w", w.index, err)
	}
	w.index++
	return nil
}

// Close writes the last chunk and the sealed end marker. It does not close
// the underlying writer. Calling it again returns nil.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	// The last chunk is sealed here, once the stage has written the ones
	// before it: handing it over would only add a wake-up of the stage
	// (on a busy machine, a wait for a core) to every snapshot of one
	// chunk, which is most of them (a chunk holds ~1,000 sessions).
	if err := w.stop(); w.err == nil {
		w.err = err
	}
	if w.err == nil && w.n > 0 {
		w.setCount()
		if w.err = w.emit(typeData, w.chunk); w.err == nil {
			w.total += int64(w.n)
			w.n = 0
		}
	}
	if w.err != nil {
		return w.err
	}
	if w.h.Records >= 0 && w.h.Records != w.total {
		w.err = fmt.Errorf("the header declares %d records and %d were written", w.h.Records, w.total)
		return w.err
	}
	end, err := msgpack.Marshal(&endMarker{Records: w.total, Chunks: int64(w.index)})
	if err != nil {
		return err
	}
	if err := w.emit(typeEnd, end); err != nil {
		w.err = err
		return err
	}
	w.closed = true
	if w.zenc != nil {
		putEncoder(w.zenc, w.zlevel, w.zwindow)
		w.zenc = nil
	}
	putBuf(w.chunk)
	putBuf(w.comp)
	putBuf(w.out)
	w.chunk, w.comp, w.out = nil, nil, nil
	return nil
}
