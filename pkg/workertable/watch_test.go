package workertable

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// seen collects the generations fn was called with.
type seen struct {
	mu   sync.Mutex
	gens []int
}

func (s *seen) add(t *Table) {
	s.mu.Lock()
	s.gens = append(s.gens, t.Generation)
	s.mu.Unlock()
}

func (s *seen) get() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.gens...)
}

// waitGen waits until the last table seen has generation gen.
func (s *seen) waitGen(t *testing.T, gen int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if g := s.get(); len(g) > 0 && g[len(g)-1] == gen {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("tables seen: generations %v; want the last to be %d", s.get(), gen)
}

func startWatch(t *testing.T, w *watcher) *seen {
	t.Helper()
	s := &seen{}
	w.fn = s.add
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch = %v; want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	return s
}

func store(t *testing.T, path string, gen int) {
	t.Helper()
	tab := sample()
	tab.Generation = gen
	if err := Store(path, tab); err != nil {
		t.Fatal(err)
	}
}

// TestWatchInotify relies on inotify alone: the poll interval is an hour, so
// a table that arrives came through an IN_MOVED_TO event.
func TestWatchInotify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "workers.msgpack")
	store(t, path, 1)
	s := startWatch(t, &watcher{path: path, poll: time.Hour})
	s.waitGen(t, 1) // the initial call
	for gen := 2; gen <= 20; gen++ {
		store(t, path, gen)
		s.waitGen(t, gen)
	}
	// A plain write-and-close (IN_CLOSE_WRITE) is seen too.
	tab := sample()
	tab.Generation = 21
	b, _ := Encode(tab)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.waitGen(t, 21)
	// Unrelated files in the directory are ignored; bad versions skipped.
	os.WriteFile(filepath.Join(dir, "other"), []byte("x"), 0o600)
	os.WriteFile(path, []byte("garbage"), 0o600)
	store(t, path, 22)
	s.waitGen(t, 22)
	g := s.get()
	for i := 1; i < len(g); i++ {
		if g[i] <= g[i-1] {
			t.Errorf("generations seen out of order or twice: %v", g)
			break
		}
	}
}

// TestWatchSameContent: storing the same table again is not a new table;
// the next different one is seen.
func TestWatchSameContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workers.msgpack")
	store(t, path, 1)
	s := startWatch(t, &watcher{path: path, poll: time.Hour})
	s.waitGen(t, 1)
	for i := 0; i < 5; i++ {
		store(t, path, 1)
	}
	store(t, path, 2)
	s.waitGen(t, 2)
	if g := s.get(); len(g) != 2 {
		t.Errorf("generations seen %v; want [1 2]", g)
	}
}

func TestWatchFileAppears(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workers.msgpack")
	s := startWatch(t, &watcher{path: path, poll: time.Hour})
	if g := s.get(); len(g) != 0 {
		t.Errorf("fn called %v before the file exists", g)
	}
	store(t, path, 7)
	s.waitGen(t, 7)
}

// TestWatchDirAppears: without the directory inotify cannot watch; the
// poll finds the directory and then the file.
func TestWatchDirAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "workers.msgpack")
	s := startWatch(t, &watcher{path: path, poll: 20 * time.Millisecond})
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	store(t, path, 3)
	s.waitGen(t, 3)
	store(t, path, 4)
	s.waitGen(t, 4)
}

func TestWatchPublic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "workers.msgpack")
	store(t, path, 5)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, path, func(t *Table) {
			select {
			case got <- t.Generation:
			default:
			}
		})
	}()
	select {
	case g := <-got:
		if g != 5 {
			t.Errorf("first table generation %d; want 5", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not call fn for the existing file")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch = %v; want nil", err)
	}
}
