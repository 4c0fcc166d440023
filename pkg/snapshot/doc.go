// Package snapshot reads and writes .zds files: connection-state snapshots
// that zd-queue, zd-run and apps write so that state outlives a process, and
// that zd-snapshot packs, unpacks, inspects, verifies and compares.
//
// A file is a checked header followed by msgpack records in independently
// sealed chunks (zstd, then AES-256-GCM with a per-chunk nonce and the
// header and the chunk's place as associated data) and a sealed end marker,
// so a file streams in and out with one chunk in memory, and truncation,
// reordering, tampering, a wrong key or a wrong file are each detected and
// named by their own error (ErrTruncated, ErrOrder, ErrTampered, ...). The
// byte layout is in docs/snapshot-format.md.
//
// Writing:
//
//	fw, err := snapshot.Create(path, snapshot.Options{Key: key, Writer: "myapp"})
//	if err != nil { ... }
//	for _, s := range sessions {
//		if err := fw.Write(&snapshot.Record{Kind: snapshot.KindWSSession, ID: s.id, ...}); err != nil {
//			fw.Abort()
//			...
//		}
//	}
//	err = fw.Close() // syncs, then renames into place (mode 0600)
//
// Reading:
//
//	fr, err := snapshot.Open(path, key)
//	if err != nil { ... } // errors.Is(err, snapshot.ErrWrongKey), ...
//	defer fr.Close()
//	for {
//		rec, err := fr.Next()
//		if err == io.EOF { break } // the end marker checked: the file is whole
//		if err != nil { ... }
//	}
//
// Without a key a file is plain and credential headers (Cookie,
// Authorization, Proxy-Authorization) are written as Redacted; they are
// kept only in encrypted files. The package imports nothing of zd but
// msgpackcheck, which vets every msgpack value before it is decoded.
package snapshot
