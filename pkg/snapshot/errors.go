package snapshot

import (
	"errors"
	"fmt"
)

// The ways a snapshot can be refused. Every error a Reader returns for a bad
// file wraps exactly one of them (test with errors.Is); the CLI maps each to
// its own exit code.
var (
	// ErrNotSnapshot: the file does not start with the .zds magic.
	ErrNotSnapshot = errors.New("not a zd snapshot (.zds) file")
	// ErrVersion: the format or schema version is not one this reader knows,
	// usually because a newer zd wrote the file.
	ErrVersion = errors.New("unsupported snapshot version")
	// ErrHeader: the header is damaged (its checksum, length or fields).
	ErrHeader = errors.New("snapshot header damaged")
	// ErrTruncated: the file ends before its sealed end marker.
	ErrTruncated = errors.New("snapshot truncated")
	// ErrOrder: a chunk sealed for another position: chunks were swapped,
	// dropped or duplicated.
	ErrOrder = errors.New("snapshot chunks out of order")
	// ErrTampered: a chunk or the end marker fails authentication (AES-GCM
	// tag, or the checksum of a plain file): changed after it was written.
	ErrTampered = errors.New("snapshot chunk fails authentication")
	// ErrCorrupt: the framing is damaged (a chunk's frame header, an
	// undecodable payload, counts that disagree, bytes after the end).
	ErrCorrupt = errors.New("snapshot damaged")
	// ErrWrongKey: the file is encrypted with another key than the one given.
	ErrWrongKey = errors.New("wrong snapshot key")
	// ErrKeyRequired: the file is encrypted and no key was given.
	ErrKeyRequired = errors.New("snapshot is encrypted and no key was given")
	// ErrBadKey: a key that is not 32 bytes in hex or base64.
	ErrBadKey = errors.New("bad snapshot key")
	// ErrSchema: a record does not match the record schema.
	ErrSchema = errors.New("record does not match the snapshot schema")
)

// FileError says where in a file a problem is. Err is one of the Err*
// values above.
type FileError struct {
	Err    error
	Chunk  int   // chunk index, -1 when the problem is not in a chunk
	Offset int64 // byte offset in the file where the problem starts
	Detail string
}

func (e *FileError) Error() string {
	where := fmt.Sprintf("at byte %d", e.Offset)
	if e.Chunk >= 0 {
		where = fmt.Sprintf("chunk %d at byte %d", e.Chunk, e.Offset)
	}
	if e.Detail == "" {
		return fmt.Sprintf("%v (%s)", e.Err, where)
	}
	return fmt.Sprintf("%v: %s (%s)", e.Err, e.Detail, where)
}

func (e *FileError) Unwrap() error { return e.Err }

// schemaError is a record that breaks the schema: field names the field.
func schemaError(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrSchema, field, fmt.Sprintf(format, a...))
}
