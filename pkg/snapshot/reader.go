package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/msgpackcheck"
)

// Reader reads a snapshot as it streams: one chunk at a time, each checked
// before any of its records is returned. A record returned is authentic (in
// an encrypted file) and fits the schema; the file as a whole is proven
// complete only when Read returns io.EOF, after the end marker.
type Reader struct {
	r      *bufio.Reader
	h      *Header
	s      *sealer
	zdec   *zstd.Decoder
	off    int64  // bytes consumed
	index  uint32 // of the next chunk
	plain  []byte // the current chunk, opened and decompressed
	sealed []byte
	open   []byte
	d      decoder
	left   int // records left in the current chunk
	total  int64
	err    error // sticky
	done   bool
}

// NewReader reads and checks the prefix and header of a snapshot. key is
// needed for an encrypted file and ignored for a plain one. Errors wrap
// ErrNotSnapshot, ErrVersion, ErrHeader, ErrTruncated, ErrWrongKey or
// ErrKeyRequired (or are the underlying reader's), as a *FileError.
func NewReader(r io.Reader, key []byte) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 64<<10 {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	sr := &Reader{r: br}
	var prefix [prefixSize]byte
	if n, err := io.ReadFull(br, prefix[:]); err != nil {
		// A short file is a truncated snapshot only if what it has is the
		// start of one.
		if m := min(n, len(Magic)); n == 0 || !bytes.Equal(prefix[:m], Magic[:m]) {
			return nil, sr.fail(ErrNotSnapshot, -1, 0, "%d bytes, no .zds magic", n)
		}
		return nil, sr.short(err, -1, "in the prefix")
	}
	if !bytes.Equal(prefix[:len(Magic)], Magic[:]) {
		return nil, sr.fail(ErrNotSnapshot, -1, 0, "it starts with % x, not the .zds magic", prefix[:len(Magic)])
	}
	version := int(binary.BigEndian.Uint16(prefix[8:]))
	if version != Version {
		if version > Version {
			return nil, sr.fail(ErrVersion, -1, 8, "format version %d, written by a newer zd; this one reads up to %d", version, Version)
		}
		return nil, sr.fail(ErrVersion, -1, 8, "format version %d is not one this reader knows (it reads 1 to %d)", version, Version)
	}
	if crc32.Checksum(prefix[:16], castagnoli) != binary.BigEndian.Uint32(prefix[16:]) {
		return nil, sr.fail(ErrHeader, -1, 8, "the prefix (version, flags, header length) fails its CRC")
	}
	hlen := binary.BigEndian.Uint32(prefix[12:])
	if flags := binary.BigEndian.Uint16(prefix[10:]); flags != 0 {
		return nil, sr.fail(ErrHeader, -1, 10, "flags %#04x set (none are defined)", flags)
	}
	if hlen > maxHeader {
		return nil, sr.fail(ErrHeader, -1, 12, "header length %d, more than %d", hlen, maxHeader)
	}
	sr.off = prefixSize
	buf := make([]byte, prefixSize+int(hlen)+checkSize)
	copy(buf, prefix[:])
	if _, err := io.ReadFull(br, buf[prefixSize:]); err != nil {
		return nil, sr.short(err, -1, "in the header")
	}
	digest := sha256.Sum256(buf[:prefixSize+hlen])
	if subtle.ConstantTimeCompare(digest[:checkSize], buf[prefixSize+hlen:]) != 1 {
		return nil, sr.fail(ErrHeader, -1, prefixSize, "its checksum does not match")
	}
	h, err := decodeHeaderBody(version, buf[prefixSize:prefixSize+hlen])
	if err != nil {
		return nil, sr.fail(ErrHeader, -1, prefixSize, "%v", err)
	}
	sr.off += int64(hlen) + checkSize
	sr.h = h
	if h.Schema > Schema {
		return nil, sr.fail(ErrVersion, -1, prefixSize, "record schema %d, written by a newer zd; this one reads up to %d", h.Schema, Schema)
	}
	if h.Schema < 1 || len(h.FileID) != fileIDSize || h.ChunkSize <= 0 || h.ChunkSize > maxChunk {
		return nil, sr.fail(ErrHeader, -1, prefixSize, "schema %d, file id of %d bytes, chunk size %d", h.Schema, len(h.FileID), h.ChunkSize)
	}
	switch h.Codec {
	case CodecNone:
	case CodecZstd:
		if sr.zdec, err = getDecoder(); err != nil {
			return nil, err
		}
	default:
		return nil, sr.fail(ErrVersion, -1, prefixSize, "codec %q is not one this reader knows (none, zstd)", clip(h.Codec))
	}
	switch h.Cipher {
	case CipherNone:
		key = nil
	case CipherAESGCM:
		if key == nil {
			return nil, sr.fail(ErrKeyRequired, -1, prefixSize, "key id %s", clip(h.KeyID))
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(key), KeySize)
		}
		if KeyID(key) != h.KeyID {
			return nil, sr.fail(ErrWrongKey, -1, prefixSize, "the file was sealed with key id %s, the key given is %s", clip(h.KeyID), KeyID(key))
		}
	default:
		return nil, sr.fail(ErrVersion, -1, prefixSize, "cipher %q is not one this reader knows (none, aes-256-gcm)", clip(h.Cipher))
	}
	if sr.s, err = newSealer(key, h.FileID, digest); err != nil {
		return nil, err
	}
	return sr, nil
}

// Header is the file's header. Its Records is the count declared up front
// (-1 if none); Count says how many were read.
func (r *Reader) Header() Header { return *r.h }

// Count is the number of records returned so far.
func (r *Reader) Count() int64 { return r.total }

// Chunks is the number of chunks read so far.
func (r *Reader) Chunks() int { return int(r.index) }

// Next returns the next record, or io.EOF after the last one once the end
// marker has been checked. Any other error is sticky and is a *FileError
// wrapping one of the Err* values, or the underlying reader's error.
func (r *Reader) Next() (*Record, error) {
	rec := new(Record)
	if err := r.Read(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// Read is Next into rec, reusing it.
func (r *Reader) Read(rec *Record) error {
	if r.err != nil {
		return r.err
	}
	for r.left == 0 {
		if r.done {
			return io.EOF
		}
		if err := r.chunk(); err != nil {
			r.err = err
			return err
		}
	}
	if err := r.d.record(rec); err != nil {
		r.err = r.fail(ErrSchema, int(r.index)-1, r.off, "record %d: %v", r.total+1, trimSchema(err))
		return r.err
	}
	if err := rec.Validate(); err != nil {
		r.err = r.fail(ErrSchema, int(r.index)-1, r.off, "record %d (id %q): %v", r.total+1, clip(rec.ID), trimSchema(err))
		return r.err
	}
	r.left--
	r.total++
	if r.left == 0 && r.d.p != len(r.d.b) {
		r.err = r.fail(ErrCorrupt, int(r.index)-1, r.off, "%d bytes after its last record", len(r.d.b)-r.d.p)
		return r.err
	}
	return nil
}

// trimSchema drops the ErrSchema prefix from a detail already filed under it.
func trimSchema(err error) string {
	s := err.Error()
	if p := ErrSchema.Error() + ": "; len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// chunk reads, checks and opens the next chunk.
func (r *Reader) chunk() error {
	at := r.off
	var fb [frameSize]byte
	n, err := io.ReadFull(r.r, fb[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return r.fail(ErrTruncated, int(r.index), at, "the file ends after %d chunks, without its end marker", r.index)
		}
		return r.short(err, int(r.index), "in the frame of chunk "+fmt.Sprint(r.index))
	}
	f, ok := parseFrame(fb[:])
	if !ok {
		return r.fail(ErrCorrupt, int(r.index), at, "its frame header fails its CRC")
	}
	if f.typ != typeData && f.typ != typeEnd {
		return r.fail(ErrCorrupt, int(r.index), at, "unknown chunk type %#02x", f.typ)
	}
	if f.length > maxChunk+uint32(nonceSize+tagSize) || int(f.length) < r.s.overhead() {
		return r.fail(ErrCorrupt, int(r.index), at, "payload length %d out of range", f.length)
	}
	r.off += frameSize
	if err := r.readPayload(int(f.length)); err != nil {
		return r.short(err, int(r.index), fmt.Sprintf("inside chunk %d (%d payload bytes declared)", r.index, f.length))
	}
	r.off += int64(f.length)
	opened, ok := r.s.open(r.open[:0], f.typ, f.index, r.sealed)
	if f.index != r.index {
		if ok {
			return r.fail(ErrOrder, int(r.index), at, "chunk %d stands where chunk %d belongs (chunks swapped, dropped or repeated)", f.index, r.index)
		}
		return r.fail(ErrTampered, int(r.index), at, "it is marked as chunk %d and does not authenticate", f.index)
	}
	if !ok {
		what := "chunk"
		if f.typ == typeEnd {
			what = "end marker"
		}
		return r.fail(ErrTampered, int(r.index), at, "the %s was changed or damaged after it was written (nonce, body or tag)", what)
	}
	r.open = opened
	plain := opened
	if r.zdec != nil {
		if r.plain, err = r.zdec.DecodeAll(opened, r.plain[:0]); err != nil {
			return r.fail(ErrCorrupt, int(r.index), at, "does not decompress: %v", err)
		}
		plain = r.plain
	}
	if len(plain) > maxChunk {
		return r.fail(ErrCorrupt, int(r.index), at, "%d bytes decompressed, more than %d", len(plain), maxChunk)
	}
	r.index++
	if f.typ == typeEnd {
		return r.end(plain, at)
	}
	if err := msgpackcheck.Check(plain, maxDepth); err != nil {
		return r.fail(ErrSchema, int(r.index)-1, at, "its records are not well-formed msgpack: %v", err)
	}
	r.d = newChunkDecoder(plain)
	cnt, err := r.d.arrayLen()
	if err != nil || cnt == 0 {
		return r.fail(ErrSchema, int(r.index)-1, at, "not a list of records")
	}
	r.left = cnt
	return nil
}

// end checks the end marker's counts and that nothing follows it.
func (r *Reader) end(plain []byte, at int64) error {
	var e endMarker
	if err := msgpackcheck.Check(plain, maxDepth); err != nil {
		return r.fail(ErrCorrupt, int(r.index)-1, at, "end marker: %v", err)
	}
	if err := msgpack.Unmarshal(plain, &e); err != nil {
		return r.fail(ErrCorrupt, int(r.index)-1, at, "end marker: %v", err)
	}
	if e.Chunks != int64(r.index)-1 || e.Records != r.total {
		return r.fail(ErrCorrupt, int(r.index)-1, at, "the end marker counts %d records in %d chunks, the file has %d in %d",
			e.Records, e.Chunks, r.total, r.index-1)
	}
	if r.h.Records >= 0 && r.h.Records != r.total {
		return r.fail(ErrCorrupt, int(r.index)-1, at, "the header declares %d records, the file has %d", r.h.Records, r.total)
	}
	if _, err := r.r.ReadByte(); err == nil {
		return r.fail(ErrCorrupt, -1, r.off, "bytes after the end marker")
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	r.done = true
	if r.zdec != nil {
		putDecoder(r.zdec)
		r.zdec = nil
	}
	return nil
}

// readPayload reads n bytes into r.sealed, growing the buffer as bytes
// arrive, so a forged length costs memory only as far as the file goes.
func (r *Reader) readPayload(n int) error {
	r.sealed = r.sealed[:0]
	for len(r.sealed) < n {
		start := len(r.sealed)
		r.sealed = append(r.sealed, make([]byte, min(n-start, 1<<20))...)
		if _, err := io.ReadFull(r.r, r.sealed[start:]); err != nil {
			return err
		}
	}
	return nil
}

func (r *Reader) fail(kind error, chunk int, off int64, format string, a ...any) error {
	return &FileError{Err: kind, Chunk: chunk, Offset: off, Detail: fmt.Sprintf(format, a...)}
}

// short turns a short read into ErrTruncated; other read errors pass.
func (r *Reader) short(err error, chunk int, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.fail(ErrTruncated, chunk, r.off, "the file ends %s", where)
	}
	return err
}
