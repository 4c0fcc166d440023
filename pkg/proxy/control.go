package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/zdtools/zd/pkg/control"
)

// Control ops served on queue.sock (see README.md, section zd-queue):
//
//	status                            → Status
//	pause   {backend?}                → Status          hold all new requests, or stop routing to one backend
//	resume  {backend?}                → Status          replay held requests; for a backend also ends a drain
//	flush                             → {flushed: N}    answer every held request with 503 + Retry-After
//	drain   {backend, timeout_ms}     → DrainResult     route nothing new to backend, wait until it has nothing in flight
//	watch   {interval_ms?, count?}    → events: Status  stream status until the client hangs up (or count events)
//	self-test                         → SelfTestResult  hold a synthetic request and replay it
const (
	OpStatus   = "status"
	OpPause    = "pause"
	OpResume   = "resume"
	OpFlush    = "flush"
	OpDrain    = "drain"
	OpWatch    = "watch"
	OpSelfTest = "self-test"
)

// BackendArgs are the args of pause and resume.
type BackendArgs struct {
	Backend string `msgpack:"backend,omitempty"`
}

// DrainArgs are the args of drain.
type DrainArgs struct {
	Backend   string `msgpack:"backend"`
	TimeoutMS int64  `msgpack:"timeout_ms,omitempty"` // default 30000
}

// WatchArgs are the args of watch.
type WatchArgs struct {
	IntervalMS int64 `msgpack:"interval_ms,omitempty"` // default 1000, at least 50
	Count      int   `msgpack:"count,omitempty"`       // 0: until the client hangs up
}

// FlushResult is the result of flush.
type FlushResult struct {
	Flushed int `msgpack:"flushed" json:"flushed"`
}

// Handle answers one control request; it is a control.Handler.
func (p *Proxy) Handle(ctx context.Context, req *control.Request, s control.Stream) (any, error) {
	switch req.Op {
	case OpStatus:
		return p.Status(), nil
	case OpPause, OpResume:
		var a BackendArgs
		if err := req.Decode(&a); err != nil {
			return nil, err
		}
		f := p.Pause
		if req.Op == OpResume {
			f = p.Resume
		}
		if err := f(a.Backend); err != nil {
			if errors.Is(err, ErrUnknownBackend) {
				return nil, control.Errorf(control.CodeNotFound, "see the backends with 'zdctl queue status'", "%s", err.Error())
			}
			return nil, err
		}
		return p.Status(), nil
	case OpFlush:
		return FlushResult{Flushed: p.Flush()}, nil
	case OpDrain:
		var a DrainArgs
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
		if err != nil {
			return nil, err
		}
		if !res.Drained {
			return nil, control.Errorf(control.CodeTimeout, "the backend still has requests in flight; raise timeout_ms or stop it anyway",
				"drain %s: %d requests still in flight after %dms", res.Backend, res.InFlight, res.WaitedMS)
		}
		return res, nil
	case OpWatch:
		var a WatchArgs
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
	case OpSelfTest:
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return p.SelfTest(ctx), nil
	}
	return nil, control.UnknownOp(req.Op)
}

var _ control.Handler = (*Proxy)(nil).Handle
