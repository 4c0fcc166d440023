package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/zdtools/zd/pkg/wsrelay"
)

// wsSessions are the WebSocket sessions running on HTTP/2 or HTTP/3
// streams. A connection with one open never goes idle, so a graceful stop
// would wait out its grace and then cut it: the stop ends them with Close
// 1012 first (shutdown), as HTTP/1.1 sessions get from the relay.
type wsSessions struct {
	mu     sync.Mutex
	m      map[*wsrelay.Session]struct{}
	closed bool
	wg     sync.WaitGroup // one for each session between add and remove
}

// add tracks s; after shutdown began, s is ended as soon as it runs.
func (t *wsSessions) add(s *wsrelay.Session) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[*wsrelay.Session]struct{}{}
	}
	t.m[s] = struct{}{}
	closed := t.closed
	t.wg.Add(1)
	t.mu.Unlock()
	if closed {
		s.Shutdown()
	}
}

// remove forgets s once its session ended.
func (t *wsSessions) remove(s *wsrelay.Session) {
	t.mu.Lock()
	delete(t.m, s)
	t.mu.Unlock()
	t.wg.Done()
}

// shutdown sends Close 1012 to every session and returns how many; each
// ends when its client replies or the relay's CloseTimeout passes.
func (t *wsSessions) shutdown() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for s := range t.m {
		s.Shutdown()
	}
	return len(t.m)
}

// wait waits until every session was removed or ctx ends, and returns how
// many are still open.
func (t *wsSessions) wait(ctx context.Context) int {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		return len(t.m)
	}
}

// openWebSocket is what an extended CONNECT for a WebSocket (RFC 8441 over
// HTTP/2, RFC 9220 over HTTP/3) does before its stream becomes the
// session's: Sec-WebSocket-Version must be 13, a stopping zd-queue takes no
// new session, the backend handshake gets the X-Forwarded-* fields an
// HTTP/1.1 one gets, and the backend's answer fields go on w. When it
// answered w itself it returns a nil session and the outcome to record.
func (p *Proxy) openWebSocket(w http.ResponseWriter, r *http.Request, transport string) (*wsrelay.Session, string) {
	if status, err := wsrelay.CheckConnect(r.Header); err != nil {
		// As over HTTP/1.1 (RFC 6455 section 4.4).
		w.Header().Set("Sec-WebSocket-Version", "13")
		p.m.badInput.WithLabelValues("malformed").Inc()
		p.plainError(w, status, err.Error())
		return nil, outcomeBadRequest
	}
	if p.stopping.Load() {
		w.Header().Set("Retry-After", "1")
		p.plainError(w, http.StatusServiceUnavailable, "zd-queue is stopping")
		return nil, outcomeShutdown
	}
	setForwarded(r)
	s, resp, err := p.ws.Open(r.Context(), &wsrelay.Request{Target: r.URL.RequestURI(), Host: r.Host, Header: r.Header, Transport: transport, Remote: r.RemoteAddr})
	if err != nil {
		wsrelay.WriteOpenError(w, err)
		if ref := (*wsrelay.RefusedError)(nil); errors.As(err, &ref) {
			return nil, outcomeProxied // the backend's own answer
		}
		return nil, outcomeNoBackend
	}
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	return s, ""
}
