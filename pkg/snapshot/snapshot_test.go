package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var testKey = bytes.Repeat([]byte{0x42}, KeySize)

// write returns a snapshot of records sample(0..n-1).
func write(t testing.TB, n int, opt Options) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Write(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readAll returns every record of b, or the first error.
func readAll(b []byte, key []byte) ([]*Record, error) {
	r, err := NewReader(bytes.NewReader(b), key)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// redacted is sample(i) as a plain file keeps it.
func redacted(r *Record) *Record {
	c := *r
	c.Headers = append([]HeaderField(nil), r.Headers...)
	for i, h := range c.Headers {
		if credential(h.Name) {
			c.Headers[i].Value = Redacted
		}
	}
	return &c
}

func TestRoundTrip(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		for _, comp := range []Compression{CompressOff, CompressFastest, CompressBest} {
			for _, n := range []int{0, 1, 10, 3000} {
				name := fmt.Sprintf("key=%v/compress=%v/n=%d", key != nil, comp, n)
				t.Run(name, func(t *testing.T) {
					b := write(t, n, Options{Key: key, Compression: comp, ChunkSize: 4096, Writer: "test", Generation: 3})
					got, err := readAll(b, key)
					if err != nil {
						t.Fatalf("read: %v", err)
					}
					if len(got) != n {
						t.Fatalf("read %d records; want %d", len(got), n)
					}
					for i, r := range got {
						want := sample(i)
						if key == nil {
							want = redacted(want)
						}
						if !reflect.DeepEqual(r, want) {
							t.Fatalf("record %d:\n got %+v\nwant %+v", i, r, want)
						}
					}
				})
			}
		}
	}
}

func TestHeader(t *testing.T) {
	b := write(t, 5, Options{Key: testKey, Writer: "echo", Generation: 9, Records: 5})
	r, err := NewReader(bytes.NewReader(b), testKey)
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if h.Version != 1 || h.Schema != 1 || h.Writer != "echo" || h.Generation != 9 || h.Records != 5 ||
		h.Codec != "zstd" || h.Cipher != "aes-256-gcm" || h.KeyID != KeyID(testKey) || h.Redacted || h.Created.IsZero() {
		t.Errorf("Header() = %+v", h)
	}
	var w bytes.Buffer
	sw, _ := NewWriter(&w, Options{Records: 3})
	sw.Write(sample(0))
	if err := sw.Close(); err == nil || !strings.Contains(err.Error(), "declares 3 records") {
		t.Errorf("Close with fewer records than declared = %v", err)
	}
}

// TestRedaction: credentials stay only in encrypted files.
func TestRedaction(t *testing.T) {
	plain := write(t, 10, Options{Compression: CompressOff})
	if bytes.Contains(plain, []byte("abc123")) || bytes.Contains(plain, []byte("secret-token")) {
		t.Errorf("a plain file holds a credential")
	}
	if !bytes.Contains(plain, []byte(Redacted)) {
		t.Errorf("a plain file has no %s in place of the credentials", Redacted)
	}
	recs, err := readAll(write(t, 10, Options{Key: testKey}), testKey)
	if err != nil || recs[0].Headers[1].Value != "session=abc123" || recs[7].Headers[1].Value != "Bearer secret-token" {
		t.Errorf("an encrypted file lost the credentials: %v", err)
	}
}

func TestFileWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.zds")
	fw, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(sample(1))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the snapshot is at its path before Close: %v", err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("stat = %v, %v; want mode 0600", st, err)
	}
	fr, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	if rec, err := fr.Next(); err != nil || rec.ID != "ws-1" {
		t.Errorf("Next = %v, %v", rec, err)
	}
	// Abort leaves the old file and no temporary one.
	fw, _ = Create(path, Options{})
	fw.Write(sample(2))
	fw.Abort()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("after Abort the directory holds %d files; want 1", len(ents))
	}
}

// damage reports the error reading b gives, or nil.
func damage(b, key []byte) error {
	_, err := readAll(b, key)
	return err
}

func flip(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x55
	return c
}

// TestFlipEveryRegion flips a byte at the start, middle and end of every
// region of a three-chunk file, plain and encrypted, and wants the error of
// that region.
func TestFlipEveryRegion(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		b := write(t, 60, Options{Key: key, ChunkSize: 4096})
		regions, err := Layout(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(regions) < 6+3*4 {
			t.Fatalf("only %d regions; want at least 3 chunks", len(regions))
		}
		for _, g := range regions {
			want := map[string]error{"magic": ErrNotSnapshot, "version": ErrVersion, "flags": ErrHeader,
				"header-length": ErrHeader, "prefix-crc": ErrHeader, "header": ErrHeader, "header-check": ErrHeader, "frame": ErrCorrupt,
				"nonce": ErrTampered, "body": ErrTampered, "tag": ErrTampered}[g.Name]
			for _, off := range []int{g.Offset, g.Offset + g.Size/2, g.Offset + g.Size - 1} {
				err := damage(flip(b, off), key)
				if !errors.Is(err, want) {
					t.Errorf("key=%v: flip at %d in %v: %v; want %v", key != nil, off, g, err, want)
				}
				var fe *FileError
				if !errors.As(err, &fe) {
					t.Errorf("flip in %v: %T is no *FileError", g, err)
				}
			}
		}
	}
}

// TestTruncation cuts the file at every chunk boundary and inside every
// region.
func TestTruncation(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		b := write(t, 60, Options{Key: key, ChunkSize: 4096})
		regions, _ := Layout(bytes.NewReader(b))
		for _, g := range regions {
			for _, cut := range []int{g.Offset, g.Offset + g.Size/2} {
				err := damage(b[:cut], key)
				want := ErrTruncated
				if cut == 0 {
					want = ErrNotSnapshot
				}
				if !errors.Is(err, want) {
					t.Errorf("key=%v: cut at %d (%v): %v; want %v", key != nil, cut, g, err, want)
				}
			}
		}
		if err := damage(append(bytes.Clone(b), 0), key); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "after the end") {
			t.Errorf("a byte after the end marker: %v; want ErrCorrupt", err)
		}
	}
}

// chunks returns the byte ranges of the data chunks of b and the offset of
// the end marker.
func chunks(t *testing.T, b []byte) ([][2]int, int) {
	regions, err := Layout(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]int
	end := -1
	for _, g := range regions {
		if g.Name == "frame" {
			if g.End {
				end = g.Offset
			} else {
				out = append(out, [2]int{g.Offset, 0})
			}
		}
	}
	for i := range out {
		if i+1 < len(out) {
			out[i][1] = out[i+1][0]
		} else {
			out[i][1] = end
		}
	}
	return out, end
}

func TestReorder(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		b := write(t, 60, Options{Key: key, ChunkSize: 4096})
		c, end := chunks(t, b)
		swapped := slicesConcat(b[:c[0][0]], b[c[1][0]:c[1][1]], b[c[0][0]:c[0][1]], b[c[2][0]:])
		if err := damage(swapped, key); !errors.Is(err, ErrOrder) {
			t.Errorf("key=%v: chunks 0 and 1 swapped: %v; want ErrOrder", key != nil, err)
		}
		dropped := slicesConcat(b[:c[1][0]], b[c[2][0]:])
		if err := damage(dropped, key); !errors.Is(err, ErrOrder) {
			t.Errorf("key=%v: chunk 1 dropped: %v; want ErrOrder", key != nil, err)
		}
		noEnd := b[:end]
		if err := damage(noEnd, key); !errors.Is(err, ErrTruncated) {
			t.Errorf("key=%v: end marker dropped: %v; want ErrTruncated", key != nil, err)
		}
		// A chunk from another file with the same key does not open here.
		other := write(t, 60, Options{Key: key, ChunkSize: 4096})
		oc, _ := chunks(t, other)
		spliced := slicesConcat(b[:c[1][0]], other[oc[1][0]:oc[1][1]], b[c[2][0]:])
		if err := damage(spliced, key); !errors.Is(err, ErrTampered) {
			t.Errorf("key=%v: chunk from another file: %v; want ErrTampered", key != nil, err)
		}
	}
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestKeys(t *testing.T) {
	b := write(t, 5, Options{Key: testKey})
	if err := damage(b, nil); !errors.Is(err, ErrKeyRequired) {
		t.Errorf("no key: %v; want ErrKeyRequired", err)
	}
	other := GenerateKey()
	if err := damage(b, other); !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), KeyID(other)) {
		t.Errorf("wrong key: %v; want ErrWrongKey naming %s", err, KeyID(other))
	}
	if _, err := readAll(write(t, 5, Options{}), other); err != nil {
		t.Errorf("a plain file read with a key: %v", err)
	}
	for _, s := range []string{FormatKey(testKey), "  " + FormatKey(testKey) + "\n", "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=", "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI"} {
		if k, err := ParseKey(s); err != nil || !bytes.Equal(k, testKey) {
			t.Errorf("ParseKey(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "hunter2", strings.Repeat("zz", 32), FormatKey(testKey)[:62]} {
		if _, err := ParseKey(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) = %v; want ErrBadKey", s, err)
		}
	}
	if _, err := NewWriter(io.Discard, Options{Key: []byte("short")}); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewWriter with a short key: %v", err)
	}
}

// rewriteHeader returns b with its header replaced by edit(header), the
// header check recomputed: a file as a newer or broken writer makes it.
func rewriteHeader(t *testing.T, b []byte, version int, edit func(*Header)) []byte {
	r, err := NewReader(bytes.NewReader(b), testKey)
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	edit(&h)
	head, _, err := encodeHeader(&h)
	if err != nil {
		t.Fatal(err)
	}
	head[9] = byte(version)
	binary.BigEndian.PutUint32(head[16:], crc32.Checksum(head[:16], crc32.MakeTable(crc32.Castagnoli)))
	digest := sha256Sum(head[:len(head)-checkSize])
	copy(head[len(head)-checkSize:], digest[:checkSize])
	old := prefixSize + int(be32(b[12:])) + checkSize
	return append(head, b[old:]...)
}

func TestVersions(t *testing.T) {
	b := write(t, 5, Options{Key: testKey})
	for _, c := range []struct {
		name    string
		version int
		edit    func(*Header)
		want    error
		msg     string
	}{
		{"format 2", 2, func(*Header) {}, ErrVersion, "newer zd"},
		{"format 0", 0, func(*Header) {}, ErrVersion, "not one this reader knows"},
		{"schema 2", 1, func(h *Header) { h.Schema = 2 }, ErrVersion, "record schema 2"},
		{"codec", 1, func(h *Header) { h.Codec = "lz4" }, ErrVersion, "codec"},
		{"cipher", 1, func(h *Header) { h.Cipher = "chacha" }, ErrVersion, "cipher"},
		{"file id", 1, func(h *Header) { h.FileID = nil }, ErrHeader, "file id"},
		// A forged header that passes its checksum still fails every chunk.
		{"forged generation", 1, func(h *Header) { h.Generation = 99 }, ErrTampered, "chunk 0"},
	} {
		err := damage(rewriteHeader(t, b, c.version, c.edit), testKey)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v; want %v saying %q", c.name, err, c.want, c.msg)
		}
	}
}

// TestSchemaMismatch: a sealed chunk whose record breaks the schema (as a
// buggy or newer writer would make it) is refused as ErrSchema, naming the
// record.
func TestSchemaMismatch(t *testing.T) {
	for _, bad := range []struct {
		name string
		rec  []byte
		msg  string
	}{
		{"unknown kind", (&Record{Kind: "websocket", ID: "x"}).AppendMsgpack(nil, false), "kind"},
		{"unknown field", []byte{0x83, fKind, 0xa8, 't', 'c', 'p', '-', 'c', 'o', 'n', 'n', fID, 0xa1, 'x', 60, 1}, "field number 60"},
		{"no id", (&Record{Kind: KindTCPConn}).AppendMsgpack(nil, false), "id"},
		{"not msgpack", []byte{0xc1}, "msgpack"},
	} {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, Options{Key: testKey})
		w.Write(sample(0))
		w.chunk = append(w.chunk, bad.rec...)
		w.n++
		w.Close()
		got, err := readAll(buf.Bytes(), testKey)
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: %v; want ErrSchema saying %q", bad.name, err, bad.msg)
		}
		if wantGood := 1 - strings.Count(bad.name, "not msgpack"); len(got) != wantGood {
			t.Errorf("%s: %d good records before the bad one; want %d (a chunk is vetted whole)", bad.name, len(got), wantGood)
		}
	}
}

// TestNotSnapshot: other files are named as such.
func TestNotSnapshot(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("{\"kind\":\"ws-session\"}\n"), []byte("\x89PNG\r\n\x1a\n0000000000"), make([]byte, 100)} {
		if err := damage(b, nil); !errors.Is(err, ErrNotSnapshot) {
			t.Errorf("read %q: %v; want ErrNotSnapshot", b, err)
		}
	}
}

// TestGolden reads the version-1 files kept in testdata: every later reader
// must read them (regenerate only with a new format version, keeping the
// old files).
func TestGolden(t *testing.T) {
	for _, c := range []struct {
		file string
		key  []byte
	}{{"testdata/v1-plain.zds", nil}, {"testdata/v1-aes.zds", testKey}} {
		if os.Getenv("ZD_SNAPSHOT_GOLDEN") == "write" {
			b := write(t, 40, Options{Key: c.key, ChunkSize: 2048, Writer: "golden", Generation: 1})
			if err := os.WriteFile(c.file, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(b, c.key)
		if err != nil || len(got) != 40 {
			t.Fatalf("%s: %d records, %v", c.file, len(got), err)
		}
		for i, r := range got {
			want := sample(i)
			if c.key == nil {
				want = redacted(want)
			}
			if !reflect.DeepEqual(r, want) {
				t.Errorf("%s record %d:\n got %+v\nwant %+v", c.file, i, r, want)
			}
		}
	}
}

type failAfter struct{ left int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		return 0, errors.New("disk full")
	}
	f.left -= len(p)
	return len(p), nil
}

// TestWriteError: a failing underlying writer stops the writer with its
// error, from Write or Close, and never hangs it.
func TestWriteError(t *testing.T) {
	for _, left := range []int{10, 3000, 20000} {
		w, err := NewWriter(&failAfter{left}, Options{ChunkSize: 1024, Compression: CompressOff})
		if err != nil {
			if left == 10 && strings.Contains(err.Error(), "disk full") {
				continue
			}
			t.Fatal(err)
		}
		var werr error
		for i := 0; i < 5000 && werr == nil; i++ {
			werr = w.Write(sample(i))
		}
		cerr := w.Close()
		if werr == nil && cerr == nil || (cerr != nil && !strings.Contains(cerr.Error(), "disk full")) {
			t.Errorf("left=%d: Write %v, Close %v; want disk full", left, werr, cerr)
		}
	}
}
