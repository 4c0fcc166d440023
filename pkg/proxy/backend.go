package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zdtools/zd/pkg/queueapi"
)

// backend is one upstream worker socket with its own keep-alive pool.
type backend struct {
	id      string // canonical address: unix:///path or tcp://host:port
	network string // "unix" or "tcp"
	addr    string
	unix    *net.UnixAddr // addr resolved once, for unix backends: WebSocket dials skip the resolver
	pool    *pool

	outstanding atomic.Int64
	draining    atomic.Bool // no new requests; set by drain or by the worker table
	paused      atomic.Bool // held by an operator: requests for it wait in the buffer
	downUntil   atomic.Int64
	served      atomic.Uint64
	failures    atomic.Uint64

	removed atomic.Bool // gone from the backend set, finishing its requests

	// Worker-table facts, for status output only.
	slot, generation, pid int
	worker                bool // from the worker table (slot pins find it)
}

// ParseBackend canonicalises a backend address. It accepts unix:///path,
// unix:/path, an absolute path, tcp://host:port and host:port, and returns
// the network, the dial address and the canonical id. It fails for anything
// else, saying which forms are accepted.
func ParseBackend(s string) (network, addr, id string, err error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "unix://"):
		addr = strings.TrimPrefix(s, "unix://")
		network = "unix"
	case strings.HasPrefix(s, "unix:"):
		addr = strings.TrimPrefix(s, "unix:")
		network = "unix"
	case strings.HasPrefix(s, "/"):
		addr, network = s, "unix"
	case strings.HasPrefix(s, "tcp://"):
		addr, network = strings.TrimPrefix(s, "tcp://"), "tcp"
	case strings.HasPrefix(s, "http://"):
		addr, network = strings.TrimSuffix(strings.TrimPrefix(s, "http://"), "/"), "tcp"
	case strings.Contains(s, "://"):
		return "", "", "", fmt.Errorf("backend %q: unknown scheme; want unix:///path or tcp://host:port", s)
	default:
		addr, network = s, "tcp"
	}
	if network == "unix" {
		if !strings.HasPrefix(addr, "/") || len(addr) > 107 {
			return "", "", "", fmt.Errorf("backend %q: want unix:///absolute/path (at most 107 bytes)", s)
		}
		return network, addr, "unix://" + addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n <= 0 || n > 65535 {
		return "", "", "", fmt.Errorf("backend %q: want tcp://host:port, host:port or unix:///path", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	addr = net.JoinHostPort(host, port)
	return "tcp", addr, "tcp://" + addr, nil
}

// dialError marks a failure to connect: nothing of the request can have
// reached the backend, so the request may go to another one.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect to backend: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func newBackend(id, network, addr string, cfg *Config) *backend {
	b := &backend{id: id, network: network, addr: addr, pool: newPool(network, addr, cfg)}
	if network == "unix" {
		b.unix = &net.UnixAddr{Net: "unix", Name: addr}
	}
	return b
}

// acquire counts a request in flight on b.
func (b *backend) acquire() { b.outstanding.Add(1) }

// release ends a request in flight on b.
func (b *backend) release() {
	b.served.Add(1)
	b.outstanding.Add(-1)
}

// markDown keeps b out of routing for d after a refused connection, unless
// nothing else is ready.
func (b *backend) markDown(d time.Duration) {
	b.failures.Add(1)
	b.downUntil.Store(time.Now().Add(d).UnixNano())
}

func (b *backend) isDown(now int64) bool { return b.downUntil.Load() > now }

// routable reports whether b may get new requests.
func (b *backend) routable() bool { return !b.draining.Load() && !b.paused.Load() }

// stateName is b's routing state for status output.
func (b *backend) stateName() string {
	switch {
	case b.removed.Load():
		return queueapi.BackendRemoved
	case b.draining.Load():
		return queueapi.BackendDraining
	case b.paused.Load():
		return queueapi.BackendPaused
	case b.isDown(time.Now().UnixNano()):
		return queueapi.BackendDown
	}
	return queueapi.BackendReady
}
