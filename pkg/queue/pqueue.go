package queue

import "math/bits"

// Priorities a ticket can have; NewTicket clamps to this range, which is
// exactly 64 buckets so that a uint64 bitmap finds the highest or lowest
// non-empty one in one instruction.
const (
	MinPriority = -32
	MaxPriority = 31

	numBuckets = MaxPriority - MinPriority + 1
)

func clampPriority(p int) int { return min(max(p, MinPriority), MaxPriority) }

func bucketOf(p int) int { return p - MinPriority }

// fifo is an intrusive doubly linked list of tickets (qprev/qnext), kept in
// push order, so push, pop and removal from the middle (cancel, evict,
// expire) are O(1) and allocate nothing.
type fifo struct{ head, tail *Ticket }

func (l *fifo) pushBack(t *Ticket) {
	t.qprev, t.qnext = l.tail, nil
	if l.tail != nil {
		l.tail.qnext = t
	} else {
		l.head = t
	}
	l.tail = t
}

func (l *fifo) insertBefore(at, t *Ticket) {
	if at == nil {
		l.pushBack(t)
		return
	}
	t.qprev, t.qnext = at.qprev, at
	if at.qprev != nil {
		at.qprev.qnext = t
	} else {
		l.head = t
	}
	at.qprev = t
}

func (l *fifo) remove(t *Ticket) {
	if t.qprev != nil {
		t.qprev.qnext = t.qnext
	} else {
		l.head = t.qnext
	}
	if t.qnext != nil {
		t.qnext.qprev = t.qprev
	} else {
		l.tail = t.qprev
	}
	t.qprev, t.qnext = nil, nil
}

// mergeFrom moves every ticket of o into l, keeping push order (both lists
// are sorted by seq). O(len(l)+len(o)).
func (l *fifo) mergeFrom(o *fifo) {
	at := l.head
	for t := o.head; t != nil; {
		next := t.qnext
		for at != nil && at.seq < t.seq {
			at = at.qnext
		}
		l.insertBefore(at, t)
		t = next
	}
	o.head, o.tail = nil, nil
}

// pqueue is one dispatch queue: a FIFO per priority and a bitmap of the
// non-empty ones.
type pqueue struct {
	buckets  [numBuckets]fifo
	nonEmpty uint64
	n        int
}

func (q *pqueue) push(t *Ticket) {
	i := bucketOf(t.prio)
	q.buckets[i].pushBack(t)
	q.nonEmpty |= 1 << i
	q.n++
	t.q = q
}

func (q *pqueue) remove(t *Ticket) {
	i := bucketOf(t.prio)
	l := &q.buckets[i]
	l.remove(t)
	if l.head == nil {
		q.nonEmpty &^= 1 << i
	}
	q.n--
	t.q = nil
}

// top returns the next ticket to release: highest priority, oldest first;
// nil when empty.
func (q *pqueue) top() *Ticket {
	if q.nonEmpty == 0 {
		return nil
	}
	return q.buckets[63-bits.LeadingZeros64(q.nonEmpty)].head
}

// mergeFrom moves every ticket of o into q.
func (q *pqueue) mergeFrom(o *pqueue) {
	for m := o.nonEmpty; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		for t := o.buckets[i].head; t != nil; t = t.qnext {
			t.q = q
		}
		q.buckets[i].mergeFrom(&o.buckets[i])
	}
	q.nonEmpty |= o.nonEmpty
	q.n += o.n
	o.nonEmpty, o.n = 0, 0
}

// before reports whether a should be released before b (nil b: yes).
func before(a, b *Ticket) bool {
	return b == nil || a.prio > b.prio || (a.prio == b.prio && a.seq < b.seq)
}
