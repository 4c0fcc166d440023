package proxy

import (
	"runtime"
	"sort"
	"time"

	"github.com/zdtools/zd/pkg/queueapi"
)

// Status returns the proxy's state now: the answer to queue.sock's status
// and the JSON of GET /_zero-downtime/status.
func (p *Proxy) Status() queueapi.Status {
	qs := p.q.Stats()
	st := queueapi.Status{
		Strategy:          p.cfg.Strategy,
		Listeners:         p.listeners(),
		Paused:            p.opPaused.Load(),
		Holding:           qs.Paused,
		ActiveConnections: p.activeConns.Load(),
		ClientConns:       p.ClientConnCounts(),
		RequestsInFlight:  p.inflight.Load(),
		BufferedRequests:  qs.Held,
		BufferedBytes:     qs.Bytes,
		ReplayedRequests:  qs.ReplayedTotal,
		Buffer:            queueapi.BufferStats(qs),
		UptimeSeconds:     time.Since(p.started).Seconds(),
	}
	ws := p.ws.Stats()
	st.WebSocket = queueapi.WebSocketStats{Sessions: ws.Sessions, Moving: ws.Moving, Moved: ws.Moved, MoveFailed: ws.MoveFailed, HeldBytes: ws.HeldBytes,
		Detached: ws.Detached, Resumed: ws.Resumed}
	byBackend := map[string]map[string]int{}
	for _, c := range p.ws.Breakdown() {
		if st.WebSocket.Protocols == nil {
			st.WebSocket.Protocols = map[string]int64{}
		}
		st.WebSocket.Protocols[c.Transport] += int64(c.Sessions)
		if byBackend[c.Backend] == nil {
			byBackend[c.Backend] = map[string]int{}
		}
		byBackend[c.Backend][c.Transport] += c.Sessions
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.MemoryUsageMB = float64(ms.Sys) / (1 << 20)

	p.rt.mu.Lock()
	for _, b := range p.rt.byID {
		st.Backends = append(st.Backends, backendStatus(b, qs.HeldByBackend[b.id], byBackend[b.id]))
	}
	for _, b := range p.rt.gone {
		st.Backends = append(st.Backends, backendStatus(b, qs.HeldByBackend[b.id], byBackend[b.id]))
	}
	p.rt.mu.Unlock()
	sort.Slice(st.Backends, func(i, j int) bool { return st.Backends[i].Addr < st.Backends[j].Addr })
	for _, b := range st.Backends {
		st.WorkerStats.Total++
		switch b.State {
		case queueapi.BackendReady:
			st.WorkerStats.Ready++
		case queueapi.BackendDraining, queueapi.BackendRemoved:
			st.WorkerStats.Draining++
		case queueapi.BackendPaused:
			st.WorkerStats.Paused++
		case queueapi.BackendDown:
			st.WorkerStats.Down++
		}
	}
	p.mu.Lock()
	if !p.lastTable.Loaded.IsZero() {
		t := queueapi.TableStatus(p.lastTable)
		st.Table = &t
	}
	tablePath := p.tablePath
	p.mu.Unlock()

	st.ReloadInProgress = st.WorkerStats.Draining > 0 || st.Holding ||
		(st.Table != nil && st.Table.Health == "reloading")
	switch {
	case st.WorkerStats.Ready == 0 && !st.Paused:
		st.Health = queueapi.HealthDegraded
		st.HealthReason = degradedReason(st, tablePath)
	case st.ReloadInProgress:
		st.Health = queueapi.HealthReloading
		switch {
		case st.Holding:
			st.HealthReason = "holding requests"
		case st.WorkerStats.Draining > 0:
			st.HealthReason = "a backend is draining"
		default:
			st.HealthReason = "the worker table says zd-run is reloading"
		}
	default:
		st.Health = queueapi.HealthHealthy
	}
	return st
}

// degradedReason says why no backend is ready.
func degradedReason(st queueapi.Status, tablePath string) string {
	switch {
	case tablePath != "" && st.Table == nil:
		if why := tableMissing(tablePath); why != "" {
			return "no backend is ready: no worker table: " + why
		}
		return "no backend is ready: the worker table " + tablePath + " has not been read (see the log)"
	case st.WorkerStats.Total == 0 && tablePath == "":
		return "no backend is ready: none configured"
	case st.WorkerStats.Total == 0:
		return "no backend is ready: the worker table lists no ready worker"
	}
	return "no backend is ready"
}

// backendStatus is b's row; ws are its WebSocket sessions by protocol.
func backendStatus(b *backend, held int, ws map[string]int) queueapi.BackendStatus {
	sessions := 0
	for _, n := range ws {
		sessions += n
	}
	return queueapi.BackendStatus{Held: held, WSSessions: sessions, WSProtocols: ws,
		Addr: b.id, State: b.stateName(), InFlight: b.outstanding.Load(), Served: b.served.Load(),
		Failures: b.failures.Load(), Slot: b.slot, Generation: b.generation, PID: b.pid,
	}
}
