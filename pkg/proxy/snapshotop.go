package proxy

import (
	"context"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
	"github.com/zdtools/zd/pkg/snapshot"
)

// The snapshot op of queue.sock: Snapshot's records streamed in batches.

// snapshotBatchBytes is how much encoded record a SnapshotBatch carries,
// well under a control frame (4 MiB); a bigger record goes in pieces of it.
const snapshotBatchBytes = 512 << 10

func (p *Proxy) handleSnapshot(ctx context.Context, req *control.Request, s control.Stream) (any, error) {
	var a queueapi.SnapshotArgs
	if err := req.Decode(&a); err != nil {
		return nil, err
	}
	f, err := snapshot.ParseFilter(a.Filter)
	if err != nil {
		return nil, control.Errorf(control.CodeBadRequest, "e.g. kind=ws-session,state=active", "%s", err.Error())
	}
	redact := !a.Credentials
	var (
		buf  []byte
		recs [][]byte
	)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		err := s.Send(queueapi.SnapshotBatch{Records: recs})
		buf, recs = buf[:0], recs[:0]
		return err
	}
	st, err := p.Snapshot(ctx, SnapshotOptions{Filter: f, Credentials: a.Credentials}, func(r *snapshot.Record) error {
		at := len(buf)
		buf = r.AppendMsgpack(buf, redact)
		if n := len(buf) - at; n > snapshotBatchBytes {
			big := buf[at:]
			buf = buf[:at]
			if err := flush(); err != nil {
				return err
			}
			for len(big) > 0 {
				k := min(len(big), snapshotBatchBytes)
				if err := s.Send(queueapi.SnapshotBatch{Part: big[:k], Last: k == len(big)}); err != nil {
					return err
				}
				big = big[k:]
			}
			return nil
		}
		recs = append(recs, buf[at:])
		if len(buf) >= snapshotBatchBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	res := queueapi.SnapshotResult{Records: st.Records, ByKind: map[string]int64{}, Skipped: st.Skipped,
		TookMS: ms(st.Took), LockMaxUS: float64(st.LockMax.Nanoseconds()) / 1e3}
	for k, n := range st.ByKind {
		res.ByKind[string(k)] = n
	}
	p.mu.Lock()
	res.Generation = p.lastTable.Generation
	p.mu.Unlock()
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
