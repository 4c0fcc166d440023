package echoapp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/zdtools/zd/pkg/snapshot"
)

// sessionStore keeps each WebSocket session's state by the id the client
// names (?session=ID) and carries it across restarts and reloads in .zds
// snapshots (pkg/snapshot): on SIGTERM each worker writes its sessions to
// DIR/echo-SLOT.zds before it closes them with 1012; a worker that sees a
// session id it does not know re-reads the snapshots that changed, so a
// client that reconnects after a reload finds its counters on the new
// worker. With -state unset there is no store and nothing of this runs.
type sessionStore struct {
	dir, file string
	key       []byte
	gen       uint64
	logf      func(string, ...any)

	mu     sync.Mutex
	recs   map[string]*snapshot.Record
	frozen bool                 // SIGTERM: the state was written; no message is taken any more
	seen   map[string]time.Time // snapshot file -> modification time when read
	n      int
}

// maxSessions bounds the store: past it, the session idle the longest is
// forgotten to make room (a scan, which at this size costs microseconds).
const maxSessions = 10000

// makeRoomLocked forgets idle sessions, longest idle first, until there is
// room for one more.
func (s *sessionStore) makeRoomLocked() {
	for len(s.recs) >= maxSessions {
		var oldest *snapshot.Record
		for _, r := range s.recs {
			if r.State != snapshot.StateActive && (oldest == nil || r.LastActive.Before(oldest.LastActive)) {
				oldest = r
			}
		}
		if oldest == nil {
			return // all active: each holds a connection, which bounds them
		}
		delete(s.recs, oldest.ID)
	}
}

func newSessionStore(dir string, getenv func(string) string, logf func(string, ...any)) (*sessionStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	slot := getenv("ZD_SLOT")
	if slot == "" {
		slot = "pid" + strconv.Itoa(os.Getpid())
	}
	s := &sessionStore{dir: dir, file: filepath.Join(dir, "echo-"+slot+".zds"), logf: logf,
		recs: map[string]*snapshot.Record{}, seen: map[string]time.Time{}}
	s.gen, _ = strconv.ParseUint(getenv("ZD_GENERATION"), 10, 64)
	for _, env := range []string{"ZD_SNAPSHOT_KEY", "CONNECTION_STATE_KEY"} {
		if v := getenv(env); v != "" {
			k, err := snapshot.ParseKey(v)
			if err != nil {
				return nil, fmt.Errorf("$%s: %w", env, err)
			}
			s.key = k
			break
		}
	}
	s.mu.Lock()
	n := s.reloadLocked()
	s.mu.Unlock()
	if n > 0 {
		logf("restored %d sessions from %s", n, dir)
	}
	return s, nil
}

// reloadLocked reads every snapshot in the directory that changed since it
// was last read, keeping for each session the record that moved last. A
// damaged or foreign file is logged and skipped: state is a convenience,
// never a reason not to serve.
func (s *sessionStore) reloadLocked() int {
	files, _ := filepath.Glob(filepath.Join(s.dir, "echo-*.zds"))
	n := 0
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || st.ModTime().Equal(s.seen[f]) {
			continue
		}
		s.seen[f] = st.ModTime()
		fr, err := snapshot.Open(f, s.key)
		if err != nil {
			s.logf("session state %s: %v", f, err)
			continue
		}
		for {
			rec, err := fr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				s.logf("session state %s: %v", f, err)
				break
			}
			old, ok := s.recs[rec.ID]
			if ok && old.State == snapshot.StateActive {
				continue // live here: this worker's state is the newest
			}
			if rec.Kind == snapshot.KindWSSession && (!ok || rec.LastActive.After(old.LastActive)) {
				if !ok {
					s.makeRoomLocked()
				}
				rec.State = snapshot.StateIdle
				s.recs[rec.ID] = rec
				n++
			}
		}
		fr.Close()
	}
	return n
}

// open returns the state of the session r asks for, creating it if
// neither this worker nor any snapshot knows it, or nil when frozen.
func (s *sessionStore) open(r *http.Request, subprotocol string) *snapshot.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return nil
	}
	id := r.URL.Query().Get("session")
	if id == "" {
		s.n++
		id = fmt.Sprintf("ws-%d-%d", os.Getpid(), s.n)
	}
	rec, ok := s.recs[id]
	if !ok {
		s.reloadLocked()
		rec, ok = s.recs[id]
	}
	now := time.Now()
	if !ok {
		s.makeRoomLocked()
		rec = &snapshot.Record{Kind: snapshot.KindWSSession, ID: id, Protocol: "ws", Created: now}
		s.recs[id] = rec
	}
	rec.State, rec.Worker, rec.Generation, rec.Remote = snapshot.StateActive, os.Getpid(), s.gen, r.RemoteAddr
	rec.Target, rec.Subprotocol, rec.LastActive = r.URL.RequestURI(), subprotocol, now
	rec.Headers = rec.Headers[:0]
	for _, h := range []string{"Host", "Origin", "User-Agent", "Cookie", "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			rec.Headers = append(rec.Headers, snapshot.HeaderField{Name: h, Value: v})
		}
	}
	return rec
}

// message counts one message echoed both ways; it reports false once the
// state was written for SIGTERM: the message is then neither echoed nor
// counted, and the client sends it again after reconnecting.
func (s *sessionStore) message(rec *snapshot.Record, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen {
		return false
	}
	rec.MsgsIn++
	rec.MsgsOut++
	rec.BytesIn += uint64(n)
	rec.BytesOut += uint64(n)
	rec.LastActive = time.Now()
	return true
}

func (s *sessionStore) close(rec *snapshot.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.State == snapshot.StateActive {
		rec.State = snapshot.StateIdle
	}
}

// save freezes the sessions and writes them to this worker's snapshot.
func (s *sessionStore) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen = true
	fw, err := snapshot.Create(s.file, snapshot.Options{Key: s.key, Writer: "examples/echo", Generation: s.gen, Records: int64(len(s.recs))})
	if err != nil {
		return err
	}
	for _, rec := range s.recs {
		if rec.State == snapshot.StateActive {
			rec.State = snapshot.StateClosing
		}
		if err := fw.Write(rec); err != nil {
			fw.Abort()
			return err
		}
	}
	if err := fw.Close(); err != nil {
		return err
	}
	s.logf("saved %d sessions to %s", len(s.recs), s.file)
	return nil
}

// serveSession answers GET /session?id=ID with the session's state.
func (s *sessionStore) serveSession(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	s.mu.Lock()
	rec, ok := s.recs[id]
	if !ok {
		s.reloadLocked()
		rec, ok = s.recs[id]
	}
	var line string
	if ok {
		line = fmt.Sprintf("session=%s msgs_in=%d msgs_out=%d bytes_in=%d state=%s worker=%d\n", rec.ID, rec.MsgsIn, rec.MsgsOut, rec.BytesIn, rec.State, rec.Worker)
	}
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no session "+id, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, line)
}
