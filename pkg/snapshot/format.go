package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/msgpackcheck"
)

// File layout (docs/snapshot-format.md has the byte diagram):
//
//	prefix   magic[8] version u16 flags u16 header-length u32 crc u32
//	header   msgpack map, header-length bytes
//	check    SHA-256(prefix || header)[:16]
//	chunks   frame[13] sealed-payload ...   type 'D', index 0, 1, ...
//	end      frame[13] sealed-payload       type 'E', index = number of data chunks
//
// The prefix's CRC-32C covers its first 16 bytes, so a damaged header
// length is told from a truncated file. A frame is type u8, index u32, payload length u32 and the CRC-32C of those
// nine bytes. Integers are big-endian.
const (
	// Version is the format version this package writes and the newest it
	// reads.
	Version = 1
	// Schema is the record schema version this package writes and the
	// newest it reads.
	Schema = 1

	prefixSize   = 20
	checkSize    = 16
	frameSize    = 13
	maxHeader    = 64 << 10
	maxChunk     = 64 << 20 // plaintext of one chunk, and of one sealed payload
	typeData     = 'D'
	typeEnd      = 'E'
	fileIDSize   = 16
	defaultChunk = 256 << 10
)

// Magic starts every .zds file. Like PNG's, its first byte is not ASCII and
// it holds a CR LF, a ^Z and an LF, so a text-mode copy that mangles line
// ends is caught as a wrong file.
var Magic = [8]byte{0x89, 'Z', 'D', 'S', '\r', '\n', 0x1a, '\n'}

// Codec and cipher names in the header.
const (
	CodecNone    = "none"
	CodecZstd    = "zstd"
	CipherNone   = "none"
	CipherAESGCM = "aes-256-gcm"
)

// Header describes a snapshot. The Reader returns it as read from the file;
// Records is known only from the end marker, once every record was read.
type Header struct {
	Version    int       `json:"version"` // format version
	Schema     int       `json:"schema"`  // record schema version
	Created    time.Time `json:"created"`
	Writer     string    `json:"writer"`     // who wrote it ("zd-snapshot pack", an app's name)
	Generation uint64    `json:"generation"` // the writer's generation, if it has one
	Records    int64     `json:"records"`    // -1 when the writer did not declare it up front
	Codec      string    `json:"codec"`      // none or zstd
	Level      string    `json:"level,omitempty"`
	Cipher     string    `json:"cipher"`           // none or aes-256-gcm
	KeyID      string    `json:"key_id,omitempty"` // KeyID of the key, when encrypted
	ChunkSize  int       `json:"chunk_size"`       // target plaintext bytes per chunk
	Redacted   bool      `json:"redacted"`         // credential headers were replaced by Redacted
	FileID     []byte    `json:"file_id"`          // random, unique to this file
}

// wireHeader is the header's msgpack form: string keys, so it reads in any
// msgpack tool, and unknown keys are ignored (added fields stay readable).
type wireHeader struct {
	Schema     int    `msgpack:"schema"`
	CreatedNS  int64  `msgpack:"created_ns"`
	Writer     string `msgpack:"writer"`
	Generation uint64 `msgpack:"generation"`
	Records    int64  `msgpack:"records"`
	Codec      string `msgpack:"codec"`
	Level      string `msgpack:"level,omitempty"`
	Cipher     string `msgpack:"cipher"`
	KeyID      string `msgpack:"key_id,omitempty"`
	ChunkSize  int    `msgpack:"chunk_size"`
	Redacted   bool   `msgpack:"redacted"`
	FileID     []byte `msgpack:"file_id"`
}

// endMarker is the msgpack payload of the sealed end marker.
type endMarker struct {
	Records int64 `msgpack:"records"`
	Chunks  int64 `msgpack:"chunks"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeHeader returns prefix || header || check and the header digest.
func encodeHeader(h *Header) ([]byte, [sha256.Size]byte, error) {
	body, err := msgpack.Marshal(&wireHeader{
		Schema: h.Schema, CreatedNS: h.Created.UnixNano(), Writer: h.Writer, Generation: h.Generation,
		Records: h.Records, Codec: h.Codec, Level: h.Level, Cipher: h.Cipher, KeyID: h.KeyID,
		ChunkSize: h.ChunkSize, Redacted: h.Redacted, FileID: h.FileID,
	})
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	if len(body) > maxHeader {
		return nil, [sha256.Size]byte{}, fmt.Errorf("header of %d bytes, more than %d (shorten the writer name)", len(body), maxHeader)
	}
	b := make([]byte, 0, prefixSize+len(body)+checkSize)
	b = append(b, Magic[:]...)
	b = binary.BigEndian.AppendUint16(b, Version)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = append(b, body...)
	digest := sha256.Sum256(b)
	return append(b, digest[:checkSize]...), digest, nil
}

// decodeHeaderBody checks and decodes the header's msgpack.
func decodeHeaderBody(version int, body []byte) (*Header, error) {
	if err := msgpackcheck.Check(body, maxDepth); err != nil {
		return nil, err
	}
	var w wireHeader
	if err := msgpack.Unmarshal(body, &w); err != nil {
		return nil, err
	}
	h := &Header{
		Version: version, Schema: w.Schema, Writer: w.Writer, Generation: w.Generation,
		Records: w.Records, Codec: w.Codec, Level: w.Level, Cipher: w.Cipher, KeyID: w.KeyID,
		ChunkSize: w.ChunkSize, Redacted: w.Redacted, FileID: w.FileID,
	}
	if w.CreatedNS != 0 {
		h.Created = time.Unix(0, w.CreatedNS).UTC()
	}
	return h, nil
}

// frame is a chunk's frame header.
type frame struct {
	typ    byte
	index  uint32
	length uint32
}

func appendFrame(b []byte, f frame) []byte {
	start := len(b)
	b = append(b, f.typ)
	b = binary.BigEndian.AppendUint32(b, f.index)
	b = binary.BigEndian.AppendUint32(b, f.length)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// parseFrame decodes a frame header, reporting false when its CRC fails.
func parseFrame(b []byte) (frame, bool) {
	if crc32.Checksum(b[:9], castagnoli) != binary.BigEndian.Uint32(b[9:]) {
		return frame{}, false
	}
	return frame{typ: b[0], index: binary.BigEndian.Uint32(b[1:]), length: binary.BigEndian.Uint32(b[5:])}, true
}
