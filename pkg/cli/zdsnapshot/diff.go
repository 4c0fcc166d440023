package zdsnapshot

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/urfave/cli/v3"
	"github.com/zdtools/zd/pkg/cli/cmdkit"
	"github.com/zdtools/zd/pkg/snapshot"
)

// diffResult is what diff --json prints.
type diffResult struct {
	Added   []diffEntry `json:"added"`
	Gone    []diffEntry `json:"gone"`
	Changed []diffEntry `json:"changed"`
	Same    int64       `json:"same"`
}

type diffEntry struct {
	Kind   snapshot.Kind `json:"kind"`
	ID     string        `json:"id"`
	Fields []string      `json:"fields,omitempty"` // changed: the JSON names of the fields that differ
	Detail []string      `json:"detail,omitempty"` // changed: "field: old -> new" for scalar fields
}

// runDiff holds A's records in memory by id, then streams B against them.
func runDiff(ctx context.Context, c *cli.Command, io cmdkit.IO) error {
	args, key, err := openArg(c, io, 2)
	if err != nil {
		return err
	}
	if args[0] == "-" && args[1] == "-" {
		return cmdkit.UsageError("give at most one of A and B as -", "both snapshots cannot be stdin")
	}
	filter, err := parseFilter(c)
	if err != nil {
		return err
	}
	type held struct {
		rec   *snapshot.Record
		order int
	}
	a := map[string]held{}
	var aOrder []string
	err = readEach(ctx, args[0], key, io, func(r *snapshot.Record) error {
		if !filter.Match(r) {
			return nil
		}
		if _, dup := a[r.ID]; dup {
			return dupError(args[0], r.ID)
		}
		a[r.ID] = held{r, len(aOrder)}
		aOrder = append(aOrder, r.ID)
		return nil
	})
	if err != nil {
		return err
	}
	var res diffResult
	seen := map[string]bool{}
	err = readEach(ctx, args[1], key, io, func(r *snapshot.Record) error {
		if !filter.Match(r) {
			return nil
		}
		if seen[r.ID] {
			return dupError(args[1], r.ID)
		}
		seen[r.ID] = true
		old, ok := a[r.ID]
		if !ok {
			res.Added = append(res.Added, diffEntry{Kind: r.Kind, ID: r.ID})
			return nil
		}
		delete(a, r.ID)
		if fields, detail := compare(old.rec, r); len(fields) > 0 {
			res.Changed = append(res.Changed, diffEntry{Kind: r.Kind, ID: r.ID, Fields: fields, Detail: detail})
		} else {
			res.Same++
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range aOrder {
		if h, ok := a[id]; ok {
			res.Gone = append(res.Gone, diffEntry{Kind: h.rec.Kind, ID: id})
		}
	}
	if c.Bool("json") {
		if res.Added == nil {
			res.Added = []diffEntry{}
		}
		if res.Gone == nil {
			res.Gone = []diffEntry{}
		}
		if res.Changed == nil {
			res.Changed = []diffEntry{}
		}
		enc := json.NewEncoder(io.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		bw := bufio.NewWriter(io.Stdout)
		for _, e := range res.Added {
			fmt.Fprintf(bw, "+ %s %s\n", e.Kind, e.ID)
		}
		for _, e := range res.Gone {
			fmt.Fprintf(bw, "- %s %s\n", e.Kind, e.ID)
		}
		for _, e := range res.Changed {
			fmt.Fprintf(bw, "~ %s %s: %s\n", e.Kind, e.ID, strings.Join(e.Detail, ", "))
		}
		fmt.Fprintf(bw, "%d added, %d gone, %d changed, %d same\n", len(res.Added), len(res.Gone), len(res.Changed), res.Same)
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	if len(res.Added)+len(res.Gone)+len(res.Changed) > 0 {
		return &cmdkit.Error{Code: ExitDiffer, Message: fmt.Sprintf("%s and %s differ", args[0], args[1])}
	}
	return nil
}

func dupError(path, id string) error {
	return &cmdkit.Error{Code: ExitSchema, Message: fmt.Sprintf("%s: id %q appears twice", path, id),
		Hint: "record ids must be unique within a snapshot for diff to pair them"}
}

// readEach reads every record of path into fn, checking the whole file.
func readEach(ctx context.Context, path string, key []byte, io cmdkit.IO, fn func(*snapshot.Record) error) error {
	r, closeIn, err := openFile(path, key, io)
	if err != nil {
		return err
	}
	defer closeIn()
	for {
		rec, err := r.Next()
		if isEOF(err) {
			return nil
		}
		if err != nil {
			return fileError(path, err)
		}
		if r.Count()%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// compare lists the fields (by JSON name) in which a and b differ, and for
// scalar fields the change.
func compare(a, b *snapshot.Record) (fields, detail []string) {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := range t.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		if isEmpty(fa) && isEmpty(fb) {
			continue // nil and empty are the same record
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
		switch fa.Kind() {
		case reflect.Slice, reflect.Map:
			detail = append(detail, name+" changed")
		default:
			detail = append(detail, fmt.Sprintf("%s %v -> %v", name, show(fa), show(fb)))
		}
	}
	return fields, detail
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func show(v reflect.Value) string {
	s := fmt.Sprint(v.Interface())
	if v.IsZero() {
		return `""`
	}
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}
