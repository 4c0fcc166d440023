package snapshot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Filter selects records. Within one field the values are alternatives;
// across fields all must match. The zero Filter matches every record.
type Filter struct {
	Kinds     []Kind
	States    []State
	Protocols []string
	Workers   []int // pids
	Backends  []string
}

// ParseFilter reads "kind=ws-session,state=active,worker=412": comma
// separated field=value terms; a field given twice, or values joined by
// "|", are alternatives ("state=active|idle"). Fields: kind, state,
// protocol, worker, backend. Unknown fields, kinds and states are errors.
func ParseFilter(s string) (Filter, error) {
	var f Filter
	for term := range strings.SplitSeq(s, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		key, vals, ok := strings.Cut(term, "=")
		if !ok || vals == "" {
			return Filter{}, fmt.Errorf("filter term %q: want field=value", term)
		}
		for v := range strings.SplitSeq(vals, "|") {
			switch strings.TrimSpace(key) {
			case "kind":
				k := Kind(v)
				if !k.valid() {
					return Filter{}, fmt.Errorf("filter kind=%s: want one of ws-session, http-request, tcp-conn, app-session, listener, worker", v)
				}
				f.Kinds = append(f.Kinds, k)
			case "state":
				st := State(v)
				if !slices.ContainsFunc(Kinds, func(k Kind) bool { return st != "" && k.stateOK(st) }) {
					return Filter{}, fmt.Errorf("filter state=%s: want one of active, idle, closing, held, starting, ready, draining, stopping, listening", v)
				}
				f.States = append(f.States, st)
			case "protocol":
				f.Protocols = append(f.Protocols, v)
			case "worker":
				pid, err := strconv.Atoi(v)
				if err != nil || pid <= 0 {
					return Filter{}, fmt.Errorf("filter worker=%s: want a pid", v)
				}
				f.Workers = append(f.Workers, pid)
			case "backend":
				f.Backends = append(f.Backends, v)
			default:
				return Filter{}, fmt.Errorf("filter field %q: want kind, state, protocol, worker or backend", key)
			}
		}
	}
	return f, nil
}

// Empty reports whether f matches every record.
func (f Filter) Empty() bool {
	return len(f.Kinds) == 0 && len(f.States) == 0 && len(f.Protocols) == 0 && len(f.Workers) == 0 && len(f.Backends) == 0
}

// Match reports whether r passes f.
func (f Filter) Match(r *Record) bool {
	return (len(f.Kinds) == 0 || slices.Contains(f.Kinds, r.Kind)) &&
		(len(f.States) == 0 || slices.Contains(f.States, r.State)) &&
		(len(f.Protocols) == 0 || slices.Contains(f.Protocols, r.Protocol)) &&
		(len(f.Workers) == 0 || slices.Contains(f.Workers, r.Worker)) &&
		(len(f.Backends) == 0 || slices.Contains(f.Backends, r.Backend))
}

// String is f in ParseFilter's syntax.
func (f Filter) String() string {
	var terms []string
	add := func(key string, vals []string) {
		if len(vals) > 0 {
			terms = append(terms, key+"="+strings.Join(vals, "|"))
		}
	}
	add("kind", mapStrings(f.Kinds, func(k Kind) string { return string(k) }))
	add("state", mapStrings(f.States, func(s State) string { return string(s) }))
	add("protocol", f.Protocols)
	add("worker", mapStrings(f.Workers, strconv.Itoa))
	add("backend", f.Backends)
	return strings.Join(terms, ",")
}

func mapStrings[T any](l []T, fn func(T) string) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = fn(v)
	}
	return out
}
