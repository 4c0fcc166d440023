package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Error is a state-directory problem the user can act on: Message says what
// is wrong and why, Hint what to do about it. Err, when set, is the cause.
type Error struct {
	Message string
	Hint    string
	Err     error
}

// Error returns the message and the cause; the hint is for the CLI to print
// on its own line.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Ensure makes sure dir is a private state directory of the current user.
// A missing dir is created, parents too, with mode 0700. An existing one is
// refused with a *Error when it is not a directory, is owned by another user,
// is group- or world-writable, or is not writable by us. A nil result means
// dir can hold sockets and files that only this user (and root) reach.
func Ensure(dir string) error {
	return ensure(dir, os.Geteuid())
}

func ensure(dir string, uid int) error {
	if dir == "" {
		return &Error{Message: "state directory: empty path", Hint: "set --state-dir or ZD_STATE_DIR"}
	}
	var st unix.Stat_t
	err := unix.Stat(dir, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			if errors.Is(err, syscall.ENOTDIR) {
				return &Error{
					Message: fmt.Sprintf("state directory %s: a parent is not a directory", dir),
					Hint:    "choose another --state-dir, or remove the file in the way",
					Err:     err,
				}
			}
			return &Error{
				Message: fmt.Sprintf("state directory %s: cannot create it", dir),
				Hint:    "check the permissions of its parent, or choose another --state-dir",
				Err:     err,
			}
		}
		err = unix.Stat(dir, &st)
	case errors.Is(err, unix.ENOTDIR):
		return &Error{
			Message: fmt.Sprintf("state directory %s: a parent is not a directory", dir),
			Hint:    "choose another --state-dir, or remove the file in the way",
			Err:     err,
		}
	}
	if err != nil {
		return &Error{
			Message: fmt.Sprintf("state directory %s: cannot reach it", dir),
			Hint:    "check the permissions of its parents, or choose another --state-dir",
			Err:     &fs.PathError{Op: "stat", Path: dir, Err: err},
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return notDir(dir)
	}
	if int(st.Uid) != uid {
		return &Error{
			Message: fmt.Sprintf("state directory %s is owned by uid %d, not by us (uid %d)", dir, st.Uid, uid),
			Hint:    "run as the owner, or choose another --state-dir (another user's daemons live there)",
		}
	}
	if st.Mode&0o022 != 0 {
		return &Error{
			Message: fmt.Sprintf("state directory %s is group- or world-writable (mode %#o)", dir, st.Mode&0o7777),
			Hint:    fmt.Sprintf("chmod 0700 %s, or choose another --state-dir", dir),
		}
	}
	if err := checkParent(dir, uid); err != nil {
		return err
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return &Error{
			Message: fmt.Sprintf("state directory %s is not writable", dir),
			Hint:    fmt.Sprintf("chmod u+rwx %s, check for a read-only mount, or choose another --state-dir", dir),
			Err:     err,
		}
	}
	return nil
}

// checkParent refuses a state directory whose parent lets another user
// rename or replace it: a parent owned by someone else than us or root, or
// writable by group or others without the sticky bit (think of a
// /tmp/zd-UID made in advance by another user).
func checkParent(dir string, uid int) error {
	parent := filepath.Dir(filepath.Clean(dir))
	var st unix.Stat_t
	if err := unix.Stat(parent, &st); err != nil {
		return nil // reached dir through it, so it exists; nothing more to learn
	}
	if int(st.Uid) != uid && st.Uid != 0 {
		return &Error{
			Message: fmt.Sprintf("state directory %s is inside %s, which uid %d owns: that user could replace it", dir, parent, st.Uid),
			Hint:    "choose a --state-dir inside a directory of your own (or root's)",
		}
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return &Error{
			Message: fmt.Sprintf("state directory %s is inside %s, which others may write to (mode %#o, no sticky bit)", dir, parent, st.Mode&0o7777),
			Hint:    fmt.Sprintf("chmod go-w %s, or choose another --state-dir", parent),
		}
	}
	return nil
}

func notDir(dir string) error {
	return &Error{
		Message: fmt.Sprintf("state directory %s exists and is not a directory", dir),
		Hint:    "remove it or choose another --state-dir",
	}
}
