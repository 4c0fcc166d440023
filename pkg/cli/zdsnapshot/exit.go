package zdsnapshot

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// Exit codes of zd-snapshot beyond the shared ones (README, zd-snapshot(1)).
// 11-17: the file's integrity; 18-19: the key; 20: the schema.
const (
	ExitDiffer     = 10 // diff: the snapshots differ
	ExitNotZDS     = 11 // not a .zds file
	ExitVersion    = 12 // a format, schema, codec or cipher this zd-snapshot does not know (a newer writer)
	ExitHeader     = 13 // the header is damaged
	ExitTruncated  = 14 // the file ends before its end marker
	ExitOrder      = 15 // chunks swapped, dropped or repeated
	ExitTampered   = 16 // a chunk or the end marker fails authentication
	ExitCorrupt    = 17 // damaged framing, counts that disagree, bytes after the end
	ExitWrongKey   = 18 // encrypted with another key
	ExitKeyMissing = 19 // encrypted and no key given, or the key given is not a key
	ExitSchema     = 20 // a record does not match the schema (in a file, or a JSON line for pack)
)

var fileErrors = []struct {
	err  error
	code int
	hint string
}{
	{snapshot.ErrNotSnapshot, ExitNotZDS, "this is not a .zds file; zd-snapshot pack makes one from JSON lines"},
	{snapshot.ErrVersion, ExitVersion, "a newer zd wrote it: read it with that zd-snapshot or a later one (this one reads format " + fmt.Sprint(snapshot.Version) + ", schema " + fmt.Sprint(snapshot.Schema) + ")"},
	{snapshot.ErrHeader, ExitHeader, "the header is damaged; take the file again from where it was written"},
	{snapshot.ErrTruncated, ExitTruncated, "the file was cut short (an interrupted copy, a full disk, a writer that died); take it again"},
	{snapshot.ErrOrder, ExitOrder, "chunks were moved, dropped or repeated when the file was copied or assembled; take it again"},
	{snapshot.ErrTampered, ExitTampered, "the bytes changed after they were written (tampering, or damage on disk or in transit): do not trust this file"},
	{snapshot.ErrCorrupt, ExitCorrupt, "the file's framing is damaged; take it again"},
	{snapshot.ErrWrongKey, ExitWrongKey, "give the key the file was written with (--key-file, ZD_SNAPSHOT_KEY or CONNECTION_STATE_KEY); inspect shows the key id it needs"},
	{snapshot.ErrKeyRequired, ExitKeyMissing, "give its key with --key-file FILE, ZD_SNAPSHOT_KEY or CONNECTION_STATE_KEY"},
	{snapshot.ErrBadKey, ExitKeyMissing, "a key is 32 bytes as 64 hex digits or base64; zd-snapshot keygen makes one"},
	{snapshot.ErrSchema, ExitSchema, "the record schema is in docs/snapshot-format.md (zd-snapshot(1) lists the fields)"},
}

// fileError gives err, from reading or writing the snapshot at path, its
// exit code and hint.
func fileError(path string, err error) error {
	if err == nil {
		return nil
	}
	var ze *cmdkit.Error
	if errors.As(err, &ze) {
		return err
	}
	for _, fe := range fileErrors {
		if errors.Is(err, fe.err) {
			return &cmdkit.Error{Code: fe.code, Message: path, Err: err, Hint: fe.hint}
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &cmdkit.Error{Code: cmdkit.ExitFailure, Err: err, Hint: "check the path"}
	}
	if errors.Is(err, fs.ErrPermission) {
		return &cmdkit.Error{Code: cmdkit.ExitFailure, Err: err, Hint: "check the file's owner and mode (snapshots are written 0600)"}
	}
	return &cmdkit.Error{Code: cmdkit.ExitFailure, Message: path, Err: err}
}
