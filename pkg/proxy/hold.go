package proxy

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/zdtools/zd/pkg/queue"
)

// holdState follows one request through its stays in the buffer.
type holdState struct {
	first  time.Time     // when it was first held
	ticket *queue.Ticket // released ticket whose replay slot is in use
	holds  int
	head   *heldHead // a copy of the request's head, for snapshots (snapshot.go)
}

// done gives back the replay slot of the last release, if any.
func (st *holdState) done() {
	if st.ticket != nil {
		st.ticket.Done()
		st.ticket = nil
	}
}

// holding reports whether new requests must wait in the buffer instead of
// going to a backend: an operator paused, or nothing is routable.
func (p *Proxy) holding() bool {
	return p.opPaused.Load() || p.rt.routableCount() == 0
}

// hold reads r's body into memory (within the buffer's limits), puts the
// request in the buffer and waits for its release. It returns ok when the
// request may now be forwarded (a pinned request is held while its
// backend pin is paused) (with its body in body.held); otherwise it
// has answered the client (or the client is gone) and returns the outcome.
func (p *Proxy) hold(w http.ResponseWriter, r *http.Request, body *reqBody, st *holdState, pin string) (string, bool) {
	st.done()
	now := time.Now()
	maxAge := p.q.Limits().MaxAge
	if st.holds == 0 {
		st.first = now
		st.head = p.newHeldHead(r, now)
	} else {
		// Released, but the backend we got refused us (it is going away):
		// wait for the backend set to change, briefly, before asking again.
		if maxAge > 0 && now.Sub(st.first) > maxAge {
			return p.reject(w, outcomeExpired, "held longer than the buffer's age limit"), false
		}
		watchClient(w)
		backoff := min(time.Duration(st.holds)*20*time.Millisecond, 500*time.Millisecond)
		t := time.NewTimer(backoff)
		select {
		case <-p.rt.notify():
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
		if r.Context().Err() != nil {
			return outcomeClientGone, false
		}
	}
	st.holds++

	if body.src != nil && body.held == nil {
		if outcome, ok := p.readBody(w, r, body); !ok {
			return outcome, false
		}
	}
	prio := queue.ParsePriority(r.Header, p.cfg.PriorityHeaders)
	t := queue.NewTicket(prio, body.held, pin, st.head)
	body.held = nil // the buffer owns the bytes now (it may compress them)
	if err := p.q.Push(t); err != nil {
		if errors.Is(err, queue.ErrTooLarge) {
			p.plainError(w, http.StatusRequestEntityTooLarge, "request body larger than the request buffer while requests are held")
			return outcomeTooLarge, false
		}
		if errors.Is(err, queue.ErrClosed) {
			return p.reject(w, outcomeShutdown, "shutting down"), false
		}
		return p.reject(w, outcomeOverflow, "request buffer full"), false
	}
	// The body is in: from now on a client that leaves must be noticed,
	// so its place in the buffer is given up.
	watchClient(w)
	out, err := t.Wait(r.Context())
	if err != nil {
		return outcomeClientGone, false
	}
	if !out.Released {
		switch out.Reason {
		case queue.ReasonEvicted:
			return p.reject(w, outcomeEvicted, "evicted from the request buffer by newer requests"), false
		case queue.ReasonExpired:
			return p.reject(w, outcomeExpired, "held longer than the buffer's age limit"), false
		case queue.ReasonFlushed:
			return p.reject(w, outcomeFlushed, "request buffer flushed by an operator"), false
		case queue.ReasonShutdown:
			return p.reject(w, outcomeShutdown, "shutting down"), false
		case queue.ReasonTooLarge:
			p.plainError(w, http.StatusRequestEntityTooLarge, "request body larger than the request buffer")
			return outcomeTooLarge, false
		}
		return p.reject(w, outcomeOverflow, "request buffer full"), false
	}
	st.ticket = t
	b, err := t.Body()
	if err != nil {
		p.log.Error("buffered body lost", "err", err)
		p.plainError(w, http.StatusInternalServerError, "buffered request body could not be restored")
		return outcomeBackendError, false
	}
	body.held = b
	if b == nil {
		body.held = nil
		body.src = nil
	}
	return "", true
}

// reject answers a request the buffer could not keep: 503 + Retry-After.
func (p *Proxy) reject(w http.ResponseWriter, outcome, msg string) string {
	w.Header().Set("Retry-After", strconv.Itoa(p.q.RetryAfter()))
	p.plainError(w, http.StatusServiceUnavailable, msg)
	return outcome
}

// readBody reads r's body into memory so it can be held. Bytes being read
// count against a budget the size of the buffer, so a flood of uploads
// can't use more memory than the buffer allows; past it the request is
// answered 503 at once.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request, body *reqBody) (string, bool) {
	limit := p.q.Limits().MaxBytes
	if limit <= 0 {
		limit = 1 << 30
	}
	// The body timeout bounds reading (or discarding) the body.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(p.cfg.BodyTimeout))
	defer rc.SetReadDeadline(time.Time{})
	if body.size > limit {
		p.discard(r, body)
		p.plainError(w, http.StatusRequestEntityTooLarge, "request body larger than the request buffer while requests are held")
		return outcomeTooLarge, false
	}
	want := body.size
	if want < 0 {
		want = 64 << 10
	}
	if !p.reserveRead(want, limit) {
		p.discard(r, body)
		return p.reject(w, outcomeOverflow, "request buffer full"), false
	}
	reserved := want
	defer func() { p.reading.Add(-reserved) }()

	buf := make([]byte, 0, max(want, 512))
	for {
		if int64(len(buf)) == int64(cap(buf)) {
			if int64(len(buf)) >= limit+1 {
				p.discard(r, body)
				p.plainError(w, http.StatusRequestEntityTooLarge, "request body larger than the request buffer while requests are held")
				return outcomeTooLarge, false
			}
			grow := min(int64(cap(buf)), limit+1-int64(len(buf)))
			if !p.reserveRead(grow, limit) {
				p.discard(r, body)
				return p.reject(w, outcomeOverflow, "request buffer full"), false
			}
			reserved += grow
			buf = append(buf, make([]byte, grow)...)[:len(buf)]
		}
		n, err := body.src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		body.read.Add(int64(n))
		if int64(len(buf)) > limit {
			p.discard(r, body)
			p.plainError(w, http.StatusRequestEntityTooLarge, "request body larger than the request buffer while requests are held")
			return outcomeTooLarge, false
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if r.Context().Err() != nil {
				return outcomeClientGone, false
			}
			return p.refuseBody(w, r, err).outcome, false
		}
	}
	body.held = buf
	body.src = nil
	return "", true
}

// drainLimit bounds the body bytes read and thrown away before a refusal,
// so that the client, still sending, reads the answer instead of a reset.
const drainLimit = 4 << 20

// discard reads what is left of a refused request's body (at most
// drainLimit, within the body timeout) without keeping it. Past the bound
// the server closes the connection after the answer.
func (p *Proxy) discard(r *http.Request, body *reqBody) {
	if body.src == nil || (body.size > 0 && body.size-body.read.Load() > drainLimit) {
		return
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	var n int64
	for n < drainLimit && r.Context().Err() == nil {
		k, err := body.src.Read(*bp)
		n += int64(k)
		if err != nil {
			return
		}
	}
}

// reserveRead takes n bytes from the body-reading budget.
func (p *Proxy) reserveRead(n, limit int64) bool {
	for {
		cur := p.reading.Load()
		if cur+n > limit {
			return false
		}
		if p.reading.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}
