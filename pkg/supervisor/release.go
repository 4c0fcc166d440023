package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zdtools/zd/pkg/runapi"
)

// releaseLink is the symlink the command path resolves through: the last
// symlink among the path's own components, e.g. "current" in
// /srv/shop/current/bin/shop after `ln -sfn releases/43 current`, or the
// command itself when it is the link. Rest is the path below the link
// ("bin/shop"; "" when the link is the command).
type releaseLink struct {
	Path string
	Rest string
}

// commandLink finds the command's release link; ok is false when no
// component of the command path is a symlink.
func (s *Supervisor) commandLink() (l releaseLink, ok bool, err error) {
	p, err := exec.LookPath(s.cfg.Command[0])
	if err != nil {
		return l, false, fmt.Errorf("find %s: %w", s.cfg.Command[0], err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return l, false, err
	}
	comps := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	for i := range comps {
		written := "/" + filepath.Join(comps[:i+1]...)
		fi, err := os.Lstat(written)
		if err != nil {
			return l, false, fmt.Errorf("resolve %s: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, ok = releaseLink{Path: written, Rest: filepath.Join(comps[i+1:]...)}, true
		}
	}
	return l, ok, nil
}

// dirOf returns the directory the link must point to for the command to
// resolve to release, or an error when the release's path does not end in
// the link's Rest (a release laid out differently).
func (l releaseLink) dirOf(release string) (string, error) {
	if l.Rest == "" {
		return release, nil
	}
	dir, ok := strings.CutSuffix(release, "/"+l.Rest)
	if !ok {
		return "", fmt.Errorf("%s does not end in %s", release, l.Rest)
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(dir, l.Rest)); err != nil || real != release {
		return "", fmt.Errorf("%s/%s does not resolve to %s", dir, l.Rest, release)
	}
	return dir, nil
}

// repoint makes the link point to the directory (or file) holding release,
// atomically (a new symlink renamed over the old one, like `ln -sfn` then
// `mv -T`), relative when the old target was relative. It changes the link
// only while it resolves to from (the release rolled back from): a link
// already moved elsewhere (a release being staged) is left alone.
func (l releaseLink) repoint(release, from string) *runapi.LinkChange {
	was, err := os.Readlink(l.Path)
	ch := &runapi.LinkChange{Path: l.Path, Was: was, Now: was}
	if err != nil {
		ch.Error = runapi.Text("read the link: " + err.Error())
		return ch
	}
	now, err := filepath.EvalSymlinks(filepath.Join(l.Path, l.Rest))
	switch {
	case err == nil && now == release:
		return ch // already there
	case err != nil || now != from:
		ch.Error = runapi.Text(fmt.Sprintf("left as is: it no longer leads to %s", from))
		return ch
	}
	dir, err := l.dirOf(release)
	if err != nil {
		ch.Error = runapi.Text("cannot tell where to point it: " + err.Error())
		return ch
	}
	target := dir
	if !filepath.IsAbs(was) {
		if base, err := filepath.EvalSymlinks(filepath.Dir(l.Path)); err == nil {
			if rel, err := filepath.Rel(base, dir); err == nil {
				target = rel
			}
		}
	}
	tmp := filepath.Join(filepath.Dir(l.Path), "."+filepath.Base(l.Path)+".zd-rollback."+strconv.Itoa(os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		ch.Error = runapi.Text(err.Error())
		return ch
	}
	if err := os.Rename(tmp, l.Path); err != nil {
		os.Remove(tmp)
		ch.Error = runapi.Text(err.Error())
		return ch
	}
	ch.Now = target
	return ch
}

// rollbackTarget resolves a rollback's target (mu held): "" is the release
// before the current one, a number a generation, anything else an absolute
// path to a release directory (through the command's link) or executable.
func (s *Supervisor) rollbackTarget(target, cur string) (string, error) {
	if target == "" {
		for i := len(s.gens) - 1; i >= 0; i-- {
			if s.gens[i].Gen < s.gen && s.gens[i].Release != cur {
				return s.gens[i].Release, nil
			}
		}
		return "", errors.New("no previous release")
	}
	if n, err := strconv.Atoi(target); err == nil {
		for _, g := range s.gens {
			if g.Gen == n {
				return g.Release, nil
			}
		}
		var known []string
		for _, g := range s.gens {
			known = append(known, strconv.Itoa(g.Gen))
		}
		return "", fmt.Errorf("no generation %d ever served (generations that did: %s)", n, strings.Join(known, ", "))
	}
	if !filepath.IsAbs(target) {
		return "", fmt.Errorf("%q is neither a generation number nor an absolute path", target)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return "", releaseStatError(target, err)
	}
	p := target
	if fi.IsDir() {
		l, ok, err := s.commandLink()
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("%s is a directory, but the command %s runs through no symlink to put it in", target, s.cfg.Command[0])
		}
		p = filepath.Join(target, l.Rest)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", releaseStatError(p, err)
	}
	if fi, err = os.Stat(real); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("release %s: not an executable file", real)
	}
	return real, nil
}

// releaseStatError says what is wrong with a release path in words, not
// as the stat call's text.
func releaseStatError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("release %s does not exist (nothing at that path, or a symlink in it points nowhere)", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("release %s cannot be read by zd-run (permission denied)", path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("release %s: %w", path, err)
}
