package snapshot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileWriter writes a snapshot file under a temporary name in the target's
// directory (mode 0600) and renames it into place on Close, so a reader never
// sees half a file and an aborted write leaves the old file as it was.
type FileWriter struct {
	*Writer
	f    *os.File
	bw   *bufio.Writer
	path string
	done bool
}

// Create starts writing a snapshot to path. Call Close to put it in place,
// or Abort to drop it.
func Create(path string, opt Options) (*FileWriter, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create snapshot %s: %w", path, err)
	}
	fw := &FileWriter{f: f, bw: bufio.NewWriterSize(f, 256<<10), path: path}
	if fw.Writer, err = NewWriter(fw.bw, opt); err != nil {
		fw.Abort()
		return nil, err
	}
	return fw, nil
}

// Close finishes the snapshot, syncs it and renames it to its path. On any
// error the temporary file is removed and the path is left as it was.
func (fw *FileWriter) Close() error {
	if fw.done {
		return nil
	}
	err := fw.Writer.Close()
	if err == nil {
		err = fw.bw.Flush()
	}
	if err == nil {
		err = fw.f.Sync()
	}
	if cerr := fw.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(fw.f.Name(), fw.path)
	}
	if err != nil {
		os.Remove(fw.f.Name())
		fw.done = true
		return fmt.Errorf("write snapshot %s: %w", fw.path, err)
	}
	fw.done = true
	if d, err := os.Open(filepath.Dir(fw.path)); err == nil {
		// The rename is durable once the directory is synced.
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort drops the snapshot being written: the temporary file is removed.
func (fw *FileWriter) Abort() error {
	if fw.done {
		return nil
	}
	fw.done = true
	if fw.Writer != nil {
		fw.Writer.stop()
	}
	return errors.Join(fw.f.Close(), os.Remove(fw.f.Name()))
}

// FileReader is a Reader of a file it closes.
type FileReader struct {
	*Reader
	f *os.File
}

// Open opens a snapshot file for reading; see NewReader for key and errors.
func Open(path string, key []byte) (*FileReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, key)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &FileReader{Reader: r, f: f}, nil
}

// Close closes the file.
func (fr *FileReader) Close() error { return fr.f.Close() }
