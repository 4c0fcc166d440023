package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mkRelease makes dir/releases/N/bin/app (executable) and returns its path.
func mkRelease(t *testing.T, dir, n string) string {
	t.Helper()
	p := filepath.Join(dir, "releases", n, "bin", "app")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A rollback re-points the command's link only while it leads to the
// release rolled back from, relative when it was relative.
func TestReleaseLinkRepoint(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r42, r45, r46 := mkRelease(t, dir, "42"), mkRelease(t, dir, "45"), mkRelease(t, dir, "46")
	link := filepath.Join(dir, "current")
	point := func(target string) {
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	s := &Supervisor{cfg: Config{Command: []string{filepath.Join(link, "bin", "app")}}}
	point("releases/45")
	l, ok, err := s.commandLink()
	if err != nil || !ok || l.Path != link || l.Rest != "bin/app" {
		t.Fatalf("commandLink() = %+v, %v, %v; want %s and bin/app", l, ok, err, link)
	}
	if ch := l.repoint(r42, r45); ch.Error != "" || ch.Was != "releases/45" || ch.Now != "releases/42" {
		t.Errorf("repoint to 42 from 45 = %+v; want releases/45 -> releases/42", ch)
	}
	if got, _ := os.Readlink(link); got != "releases/42" {
		t.Errorf("link points to %q; want releases/42", got)
	}
	if ch := l.repoint(r42, r45); ch.Error != "" || ch.Now != "releases/42" {
		t.Errorf("repoint when already there = %+v; want no change, no error", ch)
	}
	point("releases/46") // a release being staged: left alone
	if ch := l.repoint(r42, r45); !strings.Contains(string(ch.Error), "left as is") || ch.Now != "releases/46" {
		t.Errorf("repoint of a link moved on = %+v; want left as is", ch)
	}
	if got, _ := os.Readlink(link); got != "releases/46" {
		t.Errorf("link points to %q; want releases/46 untouched", got)
	}
	point(filepath.Join(dir, "releases/46")) // absolute stays absolute
	if ch := l.repoint(r42, r46); ch.Error != "" || ch.Now != filepath.Join(dir, "releases/42") {
		t.Errorf("repoint of an absolute link = %+v; want %s", ch, filepath.Join(dir, "releases/42"))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".current") {
			t.Errorf("left a temporary link %s", e.Name())
		}
	}

	// The command itself is the link.
	app := filepath.Join(dir, "app")
	if err := os.Symlink(r45, app); err != nil {
		t.Fatal(err)
	}
	s.cfg.Command = []string{app}
	l, ok, err = s.commandLink()
	if err != nil || !ok || l.Path != app || l.Rest != "" {
		t.Fatalf("commandLink() of a linked command = %+v, %v, %v", l, ok, err)
	}
	if ch := l.repoint(r42, r45); ch.Error != "" || ch.Now != r42 {
		t.Errorf("repoint of the command link = %+v; want %s", ch, r42)
	}
}

// rollback's target: a generation that served, or a release path (a
// directory through the command's link, or the executable).
func TestRollbackTarget(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r42, r45 := mkRelease(t, dir, "42"), mkRelease(t, dir, "45")
	if err := os.Symlink("releases/45", filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
	s := &Supervisor{cfg: Config{Command: []string{filepath.Join(dir, "current/bin/app")}},
		gen: 2, gens: []genRecord{{Gen: 1, Release: r42}, {Gen: 2, Release: r45}}}
	for _, c := range []struct{ target, want string }{
		{"", r42},
		{"1", r42},
		{"2", r45},
		{filepath.Join(dir, "releases/42"), r42},
		{r42, r42},
		{"3", "error: no generation 3 ever served (generations that did: 1, 2)"},
		{"releases/42", "error: neither a generation number nor an absolute path"},
		{filepath.Join(dir, "releases/44"), "error: does not exist (nothing at that path"},
		{filepath.Join(dir, "releases/42/bin"), "error: does not exist (nothing at that path"},
	} {
		got, err := s.rollbackTarget(c.target, r45)
		if err != nil {
			got = "error: " + err.Error()
		}
		if got != c.want && !(strings.HasPrefix(c.want, "error: ") && strings.Contains(got, strings.TrimPrefix(c.want, "error: "))) {
			t.Errorf("rollbackTarget(%q) = %q; want %q", c.target, got, c.want)
		}
	}
}
