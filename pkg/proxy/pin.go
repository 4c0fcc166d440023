package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// DefaultPinHeader is the request header zd-queue reads a backend pin from
// unless --pin-header says otherwise.
const DefaultPinHeader = "Zd-Backend"

// maxPinSlot bounds the slot numbers a pin may name.
const maxPinSlot = 65535

// Pin is a parsed pin header value: either a backend id (canonical address,
// as in the worker table and --backend) or a worker slot.
type Pin struct {
	Backend string // canonical backend id; empty for a slot pin
	Slot    int    // the slot of a slot:N pin; -1 for an address pin
}

// ParsePin parses the value of the pin header: a backend address in any
// form ParseBackend accepts (unix:///run/zd/app/w0.3.sock, tcp://host:port),
// or slot:N with N a decimal number in [0, 65535] without sign or leading
// zeros. Surrounding spaces, control characters and anything else are
// refused with an error saying which forms are accepted.
func ParsePin(v string) (Pin, error) {
	if v == "" || len(v) > 256 {
		return Pin{}, fmt.Errorf("pin %.40q: want 1 to 256 bytes", v)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f {
			return Pin{}, fmt.Errorf("pin %.40q: spaces and control characters are not allowed", v)
		}
	}
	if n, ok := strings.CutPrefix(v, "slot:"); ok {
		if n == "" || len(n) > 5 || (len(n) > 1 && n[0] == '0') {
			return Pin{}, fmt.Errorf("pin %q: want slot:N with N in 0..%d", v, maxPinSlot)
		}
		s, err := strconv.Atoi(n)
		if err != nil || s < 0 || s > maxPinSlot || strconv.Itoa(s) != n {
			return Pin{}, fmt.Errorf("pin %q: want slot:N with N in 0..%d", v, maxPinSlot)
		}
		return Pin{Slot: s}, nil
	}
	_, _, id, err := ParseBackend(v)
	if err != nil {
		return Pin{}, fmt.Errorf("pin: %w; or slot:N", err)
	}
	return Pin{Backend: id, Slot: -1}, nil
}

// Results of pinned requests, the label values of zdqueue_pinned_requests_total.
const (
	pinRouted   = "routed"   // sent to the backend it names (possibly after being held)
	pinHeld     = "held"     // held for its backend (counted once, when first held; it also ends in one of the others)
	pinUnknown  = "unknown"  // named no ready or paused backend: routed like an unpinned request
	pinUnpinned = "unpinned" // its backend was drained, removed or refused the connection: served elsewhere
	pinInvalid  = "invalid"  // malformed pin header: 400
)

// takePin reads and removes the pin header from r. It returns the pin,
// whether r had one (false when pinning is off), and whether it was
// well-formed (one value that ParsePin accepts).
func (p *Proxy) takePin(r *http.Request) (Pin, bool, bool) {
	h := p.cfg.PinHeader
	if h == "" {
		return Pin{}, false, true
	}
	vs := r.Header.Values(h)
	if len(vs) == 0 {
		return Pin{}, false, true
	}
	r.Header.Del(h)
	if len(vs) > 1 {
		return Pin{}, true, false
	}
	pin, err := ParsePin(vs[0])
	return pin, true, err == nil
}

// resolvePin finds the backend a pin names among the current backends: for
// an address the backend with that id; for slot:N the worker of that slot
// (from the worker table) with the newest generation that is ready or
// paused. Draining and removed backends are never returned: their pinned
// requests go anywhere.
func (rt *router) resolvePin(pin Pin) *backend {
	var best *backend
	for _, b := range *rt.snap.Load() {
		if b.draining.Load() || b.removed.Load() {
			continue
		}
		if pin.Slot < 0 {
			if b.id == pin.Backend {
				return b
			}
			continue
		}
		if !b.worker || b.slot != pin.Slot {
			continue
		}
		if best == nil || b.generation > best.generation {
			best = b
		}
	}
	return best
}
