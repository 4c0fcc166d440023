package statedir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it, sets perm, renames it over path and syncs the
// directory. Readers see the old content or the new, never a mix; after a
// nil return the new content survives a crash. On error path is unchanged
// and the temporary file is removed.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// WritePID atomically writes pid, as decimal followed by a newline, to path
// with mode 0644.
func WritePID(path string, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("write pid file %s: invalid pid %d", path, pid)
	}
	return WriteFileAtomic(path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
}

// ReadPID reads a pid file written by WritePID (or any file holding a
// decimal pid and optional surrounding whitespace). It returns an error
// wrapping fs.ErrNotExist when the file is missing, and an error naming the
// file when its content is not a positive pid. It does not check that the
// process is alive.
func ReadPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	if len(b) > 64 {
		return 0, fmt.Errorf("read pid file %s: too large (%d bytes) for a pid", path, len(b))
	}
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read pid file %s: %q is not a pid", path, s)
	}
	return pid, nil
}
