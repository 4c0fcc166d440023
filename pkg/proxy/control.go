package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/zdtools/zd/pkg/control"
	"github.com/zdtools/zd/pkg/queueapi"
)

// Handle answers one control request on queue.sock; it is a
// control.Handler. The ops and their args and results are pkg/queueapi's
// (README.md, section zd-queue, describes them for operators).
func (p *Proxy) Handle(ctx context.Context, req *control.Request, s control.Stream) (any, error) {
	switch req.Op {
	case queueapi.OpStatus:
		return p.Status(), nil
	case queueapi.OpPause, queueapi.OpResume:
		var a queueapi.BackendArgs
		if err := req.Decode(&a); err != nil {
			return nil, err
		}
		f := p.Pause
		if req.Op == queueapi.OpResume {
			f = p.Resume
		}
		if err := f(a.Backend); err != nil {
			if errors.Is(err, ErrUnknownBackend) {
				return nil, control.Errorf(control.CodeNotFound, "see the backends with 'zdctl queue status'", "%s", err.Error())
			}
			return nil, err
		}
		return p.Status(), nil
	case queueapi.OpFlush:
		return queueapi.FlushResult{Flushed: p.Flush()}, nil
	case queueapi.OpDrain:
		var a queueapi.DrainArgs
		if err := req.Decode(&a); err != nil {
			return nil, err
		}
		if a.Backend == "" {
			return nil, control.Errorf(control.CodeBadRequest, "pass {backend: ADDR, timeout_ms: N}", "drain needs a backend")
		}
		if _, _, _, err := ParseBackend(a.Backend); err != nil {
			return nil, control.Errorf(control.CodeBadRequest, "use unix:///path or tcp://host:port", "%s", err.Error())
		}
		timeout := time.Duration(a.TimeoutMS) * time.Millisecond
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		res, err := p.Drain(ctx, a.Backend, timeout)
		if errors.Is(err, ErrUnknownBackend) {
			return nil, control.Errorf(control.CodeNotFound, "see the backends with 'zdctl queue status'", "%s", err.Error())
		}
		if err != nil {
			return nil, err
		}
		if !res.Drained && res.Sessions > 0 {
			return nil, control.Errorf(control.CodeTimeout, "no other backend took its WebSocket sessions in time; start one, raise timeout_ms or stop it anyway",
				"drain %s: %d WebSocket sessions still attached after %dms", res.Backend, res.Sessions, res.WaitedMS)
		}
		if !res.Drained {
			return nil, control.Errorf(control.CodeTimeout, "the backend still has requests in flight; raise timeout_ms or stop it anyway",
				"drain %s: %d requests still in flight after %dms", res.Backend, res.InFlight, res.WaitedMS)
		}
		return res, nil
	case queueapi.OpWatch:
		var a queueapi.WatchArgs
		if err := req.Decode(&a); err != nil {
			return nil, err
		}
		iv := max(time.Duration(a.IntervalMS)*time.Millisecond, 50*time.Millisecond)
		if a.IntervalMS == 0 {
			iv = time.Second
		}
		t := time.NewTicker(iv)
		defer t.Stop()
		for n := 0; a.Count == 0 || n < a.Count; n++ {
			if err := s.Send(p.Status()); err != nil {
				return nil, nil
			}
			select {
			case <-ctx.Done():
				return nil, nil
			case <-t.C:
			}
		}
		return nil, nil
	case queueapi.OpSnapshot:
		return p.handleSnapshot(ctx, req, s)
	case queueapi.OpSelfTest:
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return p.SelfTest(ctx), nil
	}
	return nil, control.UnknownOp(req.Op)
}

var _ control.Handler = (*Proxy)(nil).Handle
