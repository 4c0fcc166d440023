package supervisor

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zdtools/zd/pkg/runapi"
	"github.com/zdtools/zd/pkg/workertable"
)

// publish asks for workers.msgpack to be rewritten from the current state.
// The write happens on the publisher goroutine, coalescing bursts of changes
// (a rename can cost milliseconds on a disk-backed state dir); flushTable
// waits until every change asked for so far is on disk.
func (s *Supervisor) publish() {
	s.pubMu.Lock()
	s.pubWant++
	s.pubMu.Unlock()
	select {
	case s.pubC <- struct{}{}:
	default:
	}
}

// flushTable waits (at most 2s) until the table written reflects every
// publish before the call: zd-queue must see the new generation before it
// is asked to drain the old one.
func (s *Supervisor) flushTable() {
	s.pubMu.Lock()
	want := s.pubWant
	s.pubMu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for {
		s.pubMu.Lock()
		done, wake := s.pubDone, s.pubWake
		s.pubMu.Unlock()
		if done >= want || time.Now().After(deadline) {
			return
		}
		select {
		case <-wake:
		case <-time.After(time.Until(deadline)):
		}
	}
}

// publisher writes the table whenever asked, until the supervisor closes
// (then it writes once more).
func (s *Supervisor) publisher() {
	defer s.wg.Done()
	for {
		select {
		case <-s.pubC:
		case <-s.procsDone:
			s.writeTable()
			return
		}
		s.writeTable()
	}
}

func (s *Supervisor) writeTable() {
	s.pubMu.Lock()
	want := s.pubWant
	s.pubMu.Unlock()
	s.mu.Lock()
	t := &workertable.Table{
		Name: s.cfg.Name, SupervisorPID: os.Getpid(), Strategy: s.cfg.Strategy,
		Generation: s.gen, Health: s.healthLocked(), Updated: time.Now(),
	}
	for _, w := range s.sortedWorkersLocked() {
		t.Workers = append(t.Workers, workertable.Worker{
			Slot: w.slot, Generation: w.gen, PID: w.pid, State: w.state, Backend: backendAddr(w.backend),
			Release: w.release, StartedAt: w.startedAt, ReadyAt: w.readyAt, Restarts: w.restarts,
			Status: w.status,
		})
	}
	s.mu.Unlock()
	b, err := workertable.Encode(t)
	if err == nil {
		err = replaceFile(s.tablePath, b)
	}
	if err != nil {
		s.log.Warn("cannot publish the worker table", "err", err)
	}
	s.pubMu.Lock()
	s.pubDone = want
	close(s.pubWake)
	s.pubWake = make(chan struct{})
	s.pubMu.Unlock()
}

// replaceFile atomically replaces path with b (temp file + rename) without
// fsync: readers must see the old or the new table, never a mix, but the
// table describes live processes, so surviving a power cut is worthless,
// while an fsync per worker state change made reloads on a busy disk slow.
func replaceFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("publish %s: %w", path, err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o600)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("publish %s: %w", path, werr)
	}
	return nil
}

// backendAddr turns a --worker-listen spec into the address zd-queue dials
// ("unix:///path" or "tcp://host:port"), dropping a name= prefix and options.
func backendAddr(spec string) string {
	if spec == "" {
		return ""
	}
	if i := strings.Index(spec, "://"); i > 0 {
		if j := strings.IndexByte(spec[:i], '='); j >= 0 {
			spec = spec[j+1:]
		}
	}
	if i := strings.IndexByte(spec, '?'); i >= 0 {
		spec = spec[:i]
	}
	if strings.HasPrefix(spec, "tcp4://") || strings.HasPrefix(spec, "tcp6://") {
		spec = "tcp://" + spec[7:]
	}
	return spec
}

func (s *Supervisor) sortedWorkersLocked() []*worker {
	ws := make([]*worker, 0, len(s.workers))
	for _, w := range s.workers {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b *worker) int {
		if a.slot != b.slot {
			return a.slot - b.slot
		}
		return a.gen - b.gen
	})
	return ws
}

// healthLocked computes the service health (mu held) and the reason.
func (s *Supervisor) healthLocked() string {
	h, _ := s.healthReasonLocked()
	return h
}

func (s *Supervisor) healthReasonLocked() (string, string) {
	switch {
	case s.stopping:
		return runapi.HealthStopping, "stopping"
	case s.reloading:
		return runapi.HealthReloading, s.reloadWhat
	}
	for slot, w := range s.slots {
		if w == nil || w.state != StateReady {
			if s.degraded != "" {
				return runapi.HealthDegraded, s.degraded
			}
			if w == nil {
				return runapi.HealthDegraded, fmt.Sprintf("slot %d has no worker", slot)
			}
			return runapi.HealthDegraded, fmt.Sprintf("worker %d (pid %d) is %s", slot, w.pid, w.state)
		}
	}
	return runapi.HealthHealthy, ""
}

func (s *Supervisor) statusLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, why := s.healthReasonLocked()
	ready := 0
	for _, w := range s.slots {
		if w != nil && w.state == StateReady {
			ready++
		}
	}
	line := fmt.Sprintf("%s: %d/%d workers ready, generation %d", h, ready, s.cfg.Workers, s.gen)
	if why != "" && h != runapi.HealthHealthy {
		line += " (" + why + ")"
	}
	return line
}

// Status returns the service's status with the origin's stats names.
func (s *Supervisor) Status() runapi.Status {
	s.mu.Lock()
	st := runapi.Status{
		Name: s.cfg.Name, PID: os.Getpid(), Version: s.cfg.Version,
		ReloadInProgress: s.reloading, Strategy: s.cfg.Strategy, Generation: s.gen,
		Release: s.releaseOf(s.gen), StateDir: s.cfg.StateDir, Upgrades: s.upgrades,
		UptimeSeconds: time.Since(s.started).Seconds(),
	}
	var reason string
	st.Health, reason = s.healthReasonLocked()
	if st.Health != runapi.HealthHealthy {
		st.HealthReason = runapi.Text(reason)
	}
	for i := len(s.gens) - 1; i >= 0; i-- {
		if s.gens[i].Gen < s.gen && s.gens[i].Release != st.Release {
			st.PreviousRelease = runapi.Text(s.gens[i].Release)
			break
		}
	}
	st.RolledBackFrom = runapi.Text(s.rolledBackFrom)
	st.Workers, st.Listeners = []runapi.Worker{}, []string{}
	if s.lastReload != nil {
		r := *s.lastReload
		st.LastReload = &r
	}
	st.WorkerStats.Desired = s.cfg.Workers
	now := time.Now()
	for _, w := range s.sortedWorkersLocked() {
		rw := runapi.Worker{Slot: w.slot, Generation: w.gen, PID: w.pid, State: w.state, Backend: runapi.Text(backendAddr(w.backend)),
			Release: w.release, StartedAt: w.startedAt.UnixMilli(), Restarts: w.restarts, Status: runapi.Text(w.status),
			UptimeS: now.Sub(w.startedAt).Seconds()}
		if !w.readyAt.IsZero() {
			rw.ReadyAt = w.readyAt.UnixMilli()
		}
		st.Workers = append(st.Workers, rw)
		st.WorkerStats.Total++
		st.WorkerStats.Restarts += w.restarts
		switch w.state {
		case StateReady:
			st.WorkerStats.Ready++
		case StateStarting:
			st.WorkerStats.Starting++
		default:
			st.WorkerStats.Draining++
		}
	}
	for _, l := range s.cfg.Listeners {
		st.Listeners = append(st.Listeners, l.Name+"="+l.Addr)
	}
	s.mu.Unlock()
	total := rss(os.Getpid())
	for i := range st.Workers {
		st.Workers[i].RSSBytes = rss(st.Workers[i].PID)
		total += st.Workers[i].RSSBytes
	}
	st.MemoryUsageMB = float64(total) / (1 << 20)
	if p, err := s.resolveRelease(); err == nil {
		st.ResolvesTo = runapi.Text(p)
	}
	st.ActiveConnections = s.activeConnections()
	return st
}

// rss reads a process's resident set size from /proc; 0 when it is gone.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// activeConnections counts the connections accepted on the listeners and
// still open (the kernel's view: accepted or still queued): ESTABLISHED TCP
// connections on the TCP listeners' ports and connected unix stream sockets
// on the unix listeners' names, asked of sock_diag; /proc/net/tcp{,6} is
// the fallback (TCP only) where sock_diag is not available.
func (s *Supervisor) activeConnections() int {
	k := keysOf(s.cfg.Listeners)
	n, err := countConnections(k)
	if err == nil {
		return n
	}
	s.log.Debug("counting connections through sock_diag", "err", err)
	return procNetCount(k)
}

// procNetCount counts ESTABLISHED TCP connections accepted on the
// listeners k describes by reading /proc/net/tcp and /proc/net/tcp6 (slow
// under load).
func procNetCount(k listenKeys) int {
	if len(k.tcpPorts) == 0 {
		return 0
	}
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for lines := 0; sc.Scan() && lines < 1_000_000; lines++ {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "01" { // 01 = ESTABLISHED
				continue
			}
			if local, port, ok := parseProcNetAddr(fields[1]); ok && k.tcpMatch(local, port) {
				n++
			}
		}
		f.Close()
	}
	return n
}

// parseProcNetAddr reads a local_address of /proc/net/tcp{,6}: the address
// in hex as 32-bit words in the kernel's byte order (this machine's), a
// colon, the port in hex.
func parseProcNetAddr(f string) (netip.Addr, uint16, bool) {
	h, p, ok := strings.Cut(f, ":")
	if !ok || (len(h) != 8 && len(h) != 32) {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	var ip [16]byte
	for w := 0; w < len(h)/8; w++ {
		v, err := strconv.ParseUint(h[w*8:w*8+8], 16, 32)
		if err != nil {
			return netip.Addr{}, 0, false
		}
		binary.NativeEndian.PutUint32(ip[w*4:], uint32(v))
	}
	if len(h) == 8 {
		return netip.AddrFrom4([4]byte(ip[:4])), uint16(port), true
	}
	return netip.AddrFrom16(ip), uint16(port), true
}
