package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/snapshot"
)

// snapshotCall runs the snapshot op on a real control socket as zdctl
// does and returns the records and the result.
func snapshotCall(t *testing.T, sock string, args queueapi.SnapshotArgs) ([]*snapshot.Record, queueapi.SnapshotResult, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		recs   []*snapshot.Record
		res    queueapi.SnapshotResult
		part   []byte
		pieces int
	)
	put := func(b []byte) error {
		r := new(snapshot.Record)
		if err := r.UnmarshalMsgpack(b); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	}
	err := control.CallStream(ctx, sock, queueapi.OpSnapshot, args, func(raw msgpack.RawMessage) error {
		var b queueapi.SnapshotBatch
		if err := control.Unmarshal(raw, &b); err != nil {
			return err
		}
		if len(b.Part) > 0 {
			pieces++
			part = append(part, b.Part...)
			if b.Last {
				err := put(part)
				part = nil
				return err
			}
			return nil
		}
		for _, rb := range b.Records {
			if err := put(rb); err != nil {
				return err
			}
		}
		return nil
	}, &res)
	return recs, res, pieces, err
}

// TestSnapshotOp: the snapshot op streams a record per client connection
// and held request (a body bigger than a batch comes in pieces), redacts
// credentials unless asked for them, and filters on zd-queue's side.
func TestSnapshotOp(t *testing.T) {
	dir := sockDir(t)
	be := newTestBackend(t, dir, "a", nil)
	px := startProxy(t, Config{Backends: []string{be.addr}})
	srv, err := control.Listen(filepath.Join(dir, "queue.sock"), control.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, px.p.Handle) }()
	defer func() { cancel(); <-served; srv.Close() }()

	c := client(t)
	// An idle keep-alive connection.
	if resp, _ := get(t, c, px.url+"/warm"); resp.StatusCode != 200 {
		t.Fatalf("GET /warm: %s", resp.Status)
	}
	if err := px.p.Pause(""); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("b"), snapshotBatchBytes+100<<10)
	ch := make(chan result, 3)
	hdr := http.Header{"Authorization": {"Bearer s3cret"}, "X-Priority": {"2"}}
	sendAsync(c, "POST", px.url+"/small?q=1", 0, []byte("small body"), hdr, ch)
	waitFor(t, "the first request held", func() bool { return held(px.p) == 1 })
	sendAsync(c, "PUT", px.url+"/big", 1, big, nil, ch)
	waitFor(t, "2 held requests", func() bool { return held(px.p) == 2 })

	recs, res, pieces, err := snapshotCall(t, srv.Path(), queueapi.SnapshotArgs{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[snapshot.Kind]int{}
	var small, large *snapshot.Record
	for _, r := range recs {
		kinds[r.Kind]++
		if r.Kind == snapshot.KindHTTPRequest && r.Target == "/small?q=1" {
			small = r
		}
		if r.Kind == snapshot.KindHTTPRequest && r.Target == "/big" {
			large = r
		}
		if r.Kind == snapshot.KindTCPConn && (r.Protocol != "h1" || r.Remote == "" || r.Local != px.addr || r.Attrs["zd.server"] != "fast") {
			t.Errorf("tcp-conn record %+v; want h1 from a remote to %s, served by fast", r, px.addr)
		}
	}
	// The held requests came on their own connections, the warm one may be one of them.
	if kinds[snapshot.KindHTTPRequest] != 2 || kinds[snapshot.KindTCPConn] < 2 || res.Records != int64(len(recs)) ||
		res.ByKind["http-request"] != 2 || res.ByKind["tcp-conn"] != int64(kinds[snapshot.KindTCPConn]) {
		t.Fatalf("records by kind %v, result %+v; want 2 http-request, 2 or more tcp-conn, counted alike", kinds, res)
	}
	if small == nil || large == nil {
		t.Fatalf("held request records missing: small %v, big %v", small, large)
	}
	if small.Method != "POST" || string(small.Body) != "small body" || small.Priority != 2 || small.State != snapshot.StateHeld ||
		small.Protocol != "http/1.1" || small.Headers[0] != (snapshot.HeaderField{Name: "Host", Value: px.addr}) || small.Created.IsZero() {
		t.Errorf("small held request %+v; want POST, its body, priority 2, held, http/1.1, Host first", small)
	}
	if v := headerValue(small, "Authorization"); v != snapshot.Redacted {
		t.Errorf("Authorization without credentials asked for = %q; want %q", v, snapshot.Redacted)
	}
	if !bytes.Equal(large.Body, big) || pieces < 2 {
		t.Errorf("big held request: %d body bytes in %d pieces; want %d in 2 or more", len(large.Body), pieces, len(big))
	}
	if res.LockMaxUS <= 0 || res.TookMS <= 0 {
		t.Errorf("result timings %+v; want some", res)
	}

	// The test-migration round trip of the same state.
	rt := px.p.SnapshotRoundTrip(context.Background())
	if !rt.OK || rt.Written["http-request"] != 2 || rt.Written["tcp-conn"] < 2 || !maps.Equal(rt.Written, rt.Read) ||
		rt.Bytes <= 0 || rt.WriteMS <= 0 || rt.ReadMS <= 0 || rt.TotalMS < rt.WriteMS {
		t.Errorf("SnapshotRoundTrip() = %+v; want ok, 2 http-request and 2 or more tcp-conn written and read, a file, timings", rt)
	}

	recs, res, _, err = snapshotCall(t, srv.Path(), queueapi.SnapshotArgs{Filter: "kind=http-request,state=held", Credentials: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || res.ByKind["tcp-conn"] != 0 {
		t.Fatalf("filtered kind=http-request: %d records, %+v; want the 2 held", len(recs), res)
	}
	for _, r := range recs {
		if r.Target == "/small?q=1" && headerValue(r, "Authorization") != "Bearer s3cret" {
			t.Errorf("Authorization with credentials asked for = %q; want it kept", headerValue(r, "Authorization"))
		}
	}

	_, _, _, err = snapshotCall(t, srv.Path(), queueapi.SnapshotArgs{Filter: "colour=red"})
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.CodeBadRequest {
		t.Errorf("filter colour=red: %v; want a bad-request error", err)
	}

	if err := px.p.Resume(""); err != nil {
		t.Fatal(err)
	}
	for seq, r := range collect(t, ch, 2) {
		if r.code != 200 {
			t.Errorf("request %d after resume: %d %q", seq, r.code, r.body)
		}
	}
	recs, _, _, err = snapshotCall(t, srv.Path(), queueapi.SnapshotArgs{Filter: "kind=http-request"})
	if err != nil || len(recs) != 0 {
		t.Errorf("after the replay: %d held request records, %v; want none", len(recs), err)
	}

	// POST /_zero-downtime/test-migration: the self-test and the round trip.
	w := httptest.NewRecorder()
	px.p.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/_zero-downtime/test-migration", nil))
	var mt queueapi.MigrationTest
	if err := json.Unmarshal(w.Body.Bytes(), &mt); err != nil {
		t.Fatalf("test-migration: %v: %s", err, w.Body.String())
	}
	if w.Code != 200 || !mt.OK || mt.Error != "" || !mt.Snapshot.OK || mt.Snapshot.Read["tcp-conn"] < 1 || mt.Snapshot.Read["http-request"] != 0 {
		t.Errorf("test-migration: %d %s; want 200, ok, the self-test's and the round trip's, connections and no held request read back", w.Code, w.Body.String())
	}
	for _, field := range []string{`"ok": true`, `"steps": [`, `"snapshot": {`, `"written": {`, `"read_ms": `, `"lock_max_us": `} {
		if !strings.Contains(w.Body.String(), field) {
			t.Errorf("test-migration JSON has no %s: %s", field, w.Body.String())
		}
	}
}

func headerValue(r *snapshot.Record, name string) string {
	for _, h := range r.Headers {
		if http.CanonicalHeaderKey(h.Name) == http.CanonicalHeaderKey(name) {
			return h.Value
		}
	}
	return "(none)"
}
