package workertable

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollInterval is the safety net under inotify, and the whole mechanism
// when inotify is not available (or the directory does not exist yet).
const pollInterval = 2 * time.Second

// Watch calls fn with the table at path: once at the start if the file
// exists, then each time the file is replaced (renamed over, or written and
// closed), promptly, through inotify on the file's directory, with a stat
// poll every few seconds as a fallback. A version that fails to load (e.g.
// from a zd-run of another release) is skipped; fn sees only good tables,
// and not again a table whose bytes equal the previous one's. fn runs on
// Watch's goroutine: a slow fn delays the next call, and intermediate
// versions may be skipped, never reordered.
// Watch returns nil when ctx is done.
func Watch(ctx context.Context, path string, fn func(*Table)) error {
	w := &watcher{path: path, fn: fn, poll: pollInterval}
	return w.run(ctx)
}

// fileID tells one version of the file from the next.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    unix.Timespec
}

type watcher struct {
	path     string
	fn       func(*Table)
	poll     time.Duration
	last     fileID
	lastData []byte
}

func (w *watcher) run(ctx context.Context) error {
	dir, base := filepath.Split(w.path)
	if dir == "" {
		dir = "."
	}
	w.check(true)
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return w.pollOnly(ctx)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	if f.SetReadDeadline(time.Time{}) != nil {
		return w.pollOnly(ctx) // not pollable: cannot wait with a bound
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	const mask = unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	watching := false
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		if !watching {
			if _, err := unix.InotifyAddWatch(fd, dir, mask); err == nil {
				watching = true
				w.check(true) // the file may have appeared before the watch
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		f.SetReadDeadline(time.Now().Add(w.poll))
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return w.pollOnly(ctx)
			}
			w.check(false)
			continue
		}
		changed := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			end := off + unix.SizeofInotifyEvent + nameLen
			if end > n {
				break
			}
			name := string(trimNUL(buf[off+unix.SizeofInotifyEvent : end]))
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				changed = true
			case ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
				// The directory went away (or moved): watch again when it
				// is back; meanwhile the poll keeps looking.
				if ev.Mask&unix.IN_IGNORED == 0 {
					unix.InotifyRmWatch(fd, uint32(ev.Wd))
				}
				watching = false
			case name == base:
				changed = true
			}
			off = end
		}
		if changed {
			w.check(true)
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// pollOnly is Watch without inotify.
func (w *watcher) pollOnly(ctx context.Context) error {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.check(false)
		}
	}
}

// check loads the file and calls fn if its content is new. Without force
// (the periodic poll) a file whose identity and times are unchanged is not
// even read; an inotify event forces the read, because an inode number can
// come back within one timestamp tick.
func (w *watcher) check(force bool) {
	var st unix.Stat_t
	if err := unix.Stat(w.path, &st); err != nil {
		w.last = fileID{}
		return
	}
	if !force && idOf(&st) == w.last {
		return
	}
	f, err := os.Open(w.path)
	if err != nil {
		return
	}
	defer f.Close()
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return
	}
	w.last = idOf(&st)
	if st.Size > MaxSize {
		return
	}
	b := make([]byte, st.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return
	}
	if w.lastData != nil && bytes.Equal(b, w.lastData) {
		return
	}
	w.lastData = b // a bad version is skipped, not retried until it changes
	t, err := Decode(b)
	if err != nil {
		return
	}
	w.fn(t)
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim}
}
