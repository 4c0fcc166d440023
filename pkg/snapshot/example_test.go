package snapshot_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/zdtools/zd/pkg/snapshot"
)

// An app writes its WebSocket sessions on SIGTERM and reads them back at
// start. Here both ends share a buffer; an app uses snapshot.Create and
// snapshot.Open on a file.
func Example() {
	key := snapshot.GenerateKey() // keep it in a 0600 file: zd-snapshot keygen -o FILE
	var file bytes.Buffer
	w, err := snapshot.NewWriter(&file, snapshot.Options{Key: key, Writer: "chat"})
	if err != nil {
		panic(err)
	}
	for i, user := range []string{"ada", "grace"} {
		err := w.Write(&snapshot.Record{Kind: snapshot.KindWSSession, ID: fmt.Sprint("c", i), Protocol: "ws",
			State: snapshot.StateActive, MsgsIn: uint64(10 * (i + 1)), Attrs: map[string]string{"user": user}})
		if err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}

	saved := file.Bytes()
	r, err := snapshot.NewReader(bytes.NewReader(saved), key)
	if err != nil {
		panic(err)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break // the end marker was checked: every record was read
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(rec.ID, rec.Attrs["user"], rec.MsgsIn)
	}

	// The same bytes with another key are refused before any record.
	_, err = snapshot.NewReader(bytes.NewReader(saved), snapshot.GenerateKey())
	fmt.Println(errors.Is(err, snapshot.ErrWrongKey))
	// Output:
	// c0 ada 10
	// c1 grace 20
	// true
}
