package snapshot

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the reader, with and without the key:
// it must return records or one of the named errors, never panic, and
// never hand out a record that fails Validate. Seeds: the files in
// testdata/fuzz/FuzzReader and small valid files made here.
func FuzzReader(f *testing.F) {
	for _, opt := range []Options{{}, {Key: testKey}, {Compression: CompressOff}, {Key: testKey, Compression: CompressOff}} {
		opt.ChunkSize = 512
		f.Add(write(f, 12, opt), opt.Key != nil)
	}
	for _, name := range []string{"testdata/v1-plain.zds", "testdata/v1-aes.zds"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b, true)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, useKey bool) {
		var key []byte
		if useKey {
			key = testKey
		}
		r, err := NewReader(bytes.NewReader(b), key)
		if err != nil {
			checkNamed(t, err)
			return
		}
		for range 100000 {
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				checkNamed(t, err)
				return
			}
			if err := rec.Validate(); err != nil {
				t.Fatalf("Next returned an invalid record: %v", err)
			}
		}
	})
}

func checkNamed(t *testing.T, err error) {
	for _, e := range []error{ErrNotSnapshot, ErrVersion, ErrHeader, ErrTruncated, ErrOrder, ErrTampered,
		ErrCorrupt, ErrWrongKey, ErrKeyRequired, ErrBadKey, ErrSchema} {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("error names no Err* value: %v", err)
}

// FuzzRecord: whatever UnmarshalMsgpack accepts re-encodes to a record
// that decodes the same.
func FuzzRecord(f *testing.F) {
	for i := range 10 {
		f.Add(sample(i).AppendMsgpack(nil, false))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalMsgpack(b); err != nil {
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("error is not ErrSchema: %v", err)
			}
			return
		}
		var again Record
		if err := again.UnmarshalMsgpack(r.AppendMsgpack(nil, false)); err != nil {
			t.Fatalf("re-encoded record fails: %v", err)
		}
		if !reflect.DeepEqual(&r, &again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, again)
		}
	})
}
