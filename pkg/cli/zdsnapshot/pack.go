package zdsnapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// maxLine bounds one JSON line: the largest record (three 16 MiB byte
// fields in base64, and strings) fits.
const maxLine = 96 << 20

// recordWriter is where pack puts records: a file renamed into place on
// Close, or stdout.
type recordWriter interface {
	Write(*snapshot.Record) error
	Close() error
	Header() snapshot.Header
}

type stdoutWriter struct {
	*snapshot.Writer
	bw *bufio.Writer
}

func (s stdoutWriter) Close() error {
	if err := s.Writer.Close(); err != nil {
		return err
	}
	return s.bw.Flush()
}

func runPack(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	if c.Args().Len() > 0 {
		return cmdkit.UsageError("pack reads JSON lines on stdin: zd-snapshot pack -o FILE < records.jsonl", "unexpected argument %q", c.Args().First())
	}
	comp, err := snapshot.ParseCompression(c.String("compress"))
	if err != nil {
		return cmdkit.UsageError("use --compress off|on|fastest|default|better|best", "%v", err)
	}
	size := c.Int("chunk-size")
	if size < 1024 || size > 32<<20 {
		return cmdkit.UsageError("use --chunk-size between 1024 and 33554432", "chunk size %d out of range", size)
	}
	key, err := loadKey(c, io)
	if err != nil {
		return err
	}
	if c.Bool("plain") {
		key = nil
	}
	opt := snapshot.Options{Key: key, Compression: comp, Writer: c.String("writer"), Generation: c.Uint64("generation"), ChunkSize: size}
	out := c.String("output")
	var w recordWriter
	var abort func()
	if out == "-" {
		if isTerminal(io.Stdout) {
			return cmdkit.UsageError("redirect stdout to a file, or use -o FILE", "a snapshot is binary: not writing it to a terminal")
		}
		bw := bufio.NewWriterSize(io.Stdout, 256<<10)
		sw, err := snapshot.NewWriter(bw, opt)
		if err != nil {
			return fileError(out, err)
		}
		w, abort = stdoutWriter{sw, bw}, func() {}
	} else {
		fw, err := snapshot.Create(out, opt)
		if err != nil {
			return fileError(out, err)
		}
		w, abort = fw, func() { fw.Abort() }
	}
	n, err := packLines(ctx, io.Stdin, w)
	if err != nil {
		abort()
		return err
	}
	if err := w.Close(); err != nil {
		abort()
		return fileError(out, err)
	}
	h := w.Header()
	sealed := "plain, credentials redacted"
	if h.Cipher != snapshot.CipherNone {
		sealed = h.Cipher + " key id " + h.KeyID
	}
	codec := h.Codec
	if h.Level != "" {
		codec += " " + h.Level
	}
	fmt.Fprintf(io.Stderr, "zd-snapshot: packed %d records into %s (%s, %s)\n", n, out, codec, sealed)
	return nil
}

// packLines reads one JSON record a line (blank lines skipped) into w.
func packLines(ctx context.Context, in io.Reader, w recordWriter) (int64, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	var n, line int64
	var rec snapshot.Record
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if line%4096 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		if err := decodeLine(b, &rec); err != nil {
			return n, &cmdkit.Error{Code: ExitSchema, Message: fmt.Sprintf("stdin line %d", line), Err: err,
				Hint: "one JSON object a line; the fields are in docs/snapshot-format.md and zd-snapshot(1)"}
		}
		if err := w.Write(&rec); err != nil {
			if errors.Is(err, snapshot.ErrSchema) {
				return n, &cmdkit.Error{Code: ExitSchema, Message: fmt.Sprintf("stdin line %d (id %q)", line, rec.ID), Err: err,
					Hint: "the fields each kind takes are in docs/snapshot-format.md and zd-snapshot(1)"}
			}
			return n, err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return n, &cmdkit.Error{Code: ExitSchema, Message: fmt.Sprintf("stdin line %d", line+1), Err: err,
				Hint: fmt.Sprintf("a record's JSON line is at most %d MiB", maxLine>>20)}
		}
		return n, fmt.Errorf("read stdin: %w", err)
	}
	return n, nil
}

// decodeLine decodes one JSON record strictly: unknown fields and trailing
// data are errors, so a typo never silently drops state.
func decodeLine(b []byte, rec *snapshot.Record) error {
	*rec = snapshot.Record{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(rec); err != nil {
		return fmt.Errorf("%w: %v", snapshot.ErrSchema, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: more than one JSON value on the line", snapshot.ErrSchema)
	}
	return nil
}

func isEOF(err error) bool { return err == io.EOF }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
