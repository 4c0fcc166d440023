package zdsnapshot

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// ageBuckets are inspect's age classes: a record's age is the header's
// created time minus the record's.
var ageBuckets = []struct {
	name string
	max  time.Duration
}{{"<1s", time.Second}, {"1s-10s", 10 * time.Second}, {"10s-1m", time.Minute}, {"1m-10m", 10 * time.Minute},
	{"10m-1h", time.Hour}, {"1h-1d", 24 * time.Hour}, {">1d", 1<<63 - 1}}

// summary is what inspect --json prints.
type summary struct {
	File       string           `json:"file"`
	Bytes      int64            `json:"bytes,omitempty"`
	Header     snapshot.Header  `json:"header"`
	Chunks     int              `json:"chunks"`
	Records    int64            `json:"records"`
	Filter     string           `json:"filter,omitempty"`
	Matched    int64            `json:"matched"`
	ByKind     map[string]int64 `json:"by_kind"`
	ByProtocol map[string]int64 `json:"by_protocol"`
	ByState    map[string]int64 `json:"by_state"`
	ByWorker   map[string]int64 `json:"by_worker"`
	ByAge      map[string]int64 `json:"by_age"`
	First      []listed         `json:"first,omitempty"`
	Layout     []region         `json:"layout,omitempty"`
}

type listed struct {
	Kind     snapshot.Kind  `json:"kind"`
	ID       string         `json:"id"`
	Protocol string         `json:"protocol,omitempty"`
	State    snapshot.State `json:"state,omitempty"`
	Worker   int            `json:"worker,omitempty"`
	Remote   string         `json:"remote,omitempty"`
	AgeS     float64        `json:"age_s,omitempty"`
}

type region struct {
	Name   string `json:"name"`
	Chunk  int    `json:"chunk"`
	End    bool   `json:"end,omitempty"`
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
}

func (s *summary) count(r *snapshot.Record) {
	s.Matched++
	s.ByKind[string(r.Kind)]++
	s.ByProtocol[orNone(r.Protocol)]++
	s.ByState[orNone(string(r.State))]++
	w := "-"
	if r.Worker != 0 {
		w = strconv.Itoa(r.Worker)
	}
	s.ByWorker[w]++
	s.ByAge[ageBucket(s.Header.Created, r.Created)]++
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ageBucket(at, created time.Time) string {
	if created.IsZero() {
		return "unknown"
	}
	age := at.Sub(created)
	for _, b := range ageBuckets {
		if age < b.max {
			return b.name
		}
	}
	return ageBuckets[len(ageBuckets)-1].name
}

func runInspect(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	args, key, err := openArg(c, io, 1)
	if err != nil {
		return err
	}
	filter, err := parseFilter(c)
	if err != nil {
		return err
	}
	path := args[0]
	r, closeIn, err := openFile(path, key, io)
	if err != nil {
		return err
	}
	defer closeIn()
	s := &summary{File: path, Header: r.Header(), Filter: filter.String(), ByKind: map[string]int64{},
		ByProtocol: map[string]int64{}, ByState: map[string]int64{}, ByWorker: map[string]int64{}, ByAge: map[string]int64{}}
	limit := c.Int("limit")
	var rec snapshot.Record
	for {
		if err := r.Read(&rec); isEOF(err) {
			break
		} else if err != nil {
			return fileError(path, err)
		}
		if r.Count()%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !filter.Match(&rec) {
			continue
		}
		s.count(&rec)
		if len(s.First) < limit {
			l := listed{Kind: rec.Kind, ID: rec.ID, Protocol: rec.Protocol, State: rec.State, Worker: rec.Worker, Remote: rec.Remote}
			if !rec.Created.IsZero() {
				l.AgeS = s.Header.Created.Sub(rec.Created).Seconds()
			}
			s.First = append(s.First, l)
		}
	}
	s.Records, s.Chunks = r.Count(), r.Chunks()
	if path != "-" {
		if st, err := os.Stat(path); err == nil {
			s.Bytes = st.Size()
		}
		if c.Bool("layout") {
			f, err := os.Open(path)
			if err != nil {
				return fileError(path, err)
			}
			regions, err := snapshot.Layout(bufio.NewReaderSize(f, 256<<10))
			f.Close()
			if err != nil {
				return fileError(path, err)
			}
			for _, g := range regions {
				s.Layout = append(s.Layout, region{g.Name, g.Chunk, g.End, g.Offset, g.Size})
			}
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(io.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printSummary(io, s)
	return nil
}

// sortedCounts lists m's entries by count, largest first, then by name.
func sortedCounts(m map[string]int64, order []string) [][2]string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	rank := func(k string) int {
		if i := slices.Index(order, k); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortFunc(l, func(a, b kv) int {
		if order != nil {
			if c := cmp.Compare(rank(a.k), rank(b.k)); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	out := make([][2]string, len(l))
	for i, e := range l {
		out[i] = [2]string{e.k, strconv.FormatInt(e.v, 10)}
	}
	return out
}

func kindOrder() []string {
	var o []string
	for _, k := range snapshot.Kinds {
		o = append(o, string(k))
	}
	return o
}

func ageOrder() []string {
	var o []string
	for _, b := range ageBuckets {
		o = append(o, b.name)
	}
	return append(o, "unknown")
}

func sealedText(h snapshot.Header) string {
	if h.Cipher == snapshot.CipherNone {
		return "none (plain; credential headers redacted)"
	}
	return h.Cipher + ", key id " + h.KeyID
}

func codecText(h snapshot.Header) string {
	s := h.Codec
	if h.Level != "" {
		s += " (" + h.Level + ")"
	}
	return s
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
