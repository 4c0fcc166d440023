package wsrelay

// replayRing keeps the backend→client messages of a resumable session
// that the client may not have got: numbered from 0 in the session, the
// oldest at head. While the client is connected it keeps the last ones
// within the bounds (what a dropped connection may have lost in flight);
// while the client is away it keeps all, and past a bound the session
// ends.
type replayRing struct {
	msgs  []replayMsg
	head  int
	base  uint64 // number of msgs[head]
	next  uint64 // number of the next message
	bytes int64  // payload bytes plus replayOverhead per message
}

type replayMsg struct {
	op   byte
	data []byte
}

// replayOverhead is what one held message costs besides its payload, so
// a flood of empty messages is bounded too.
const replayOverhead = 32

func (q *replayRing) push(op byte, p []byte) int64 {
	data := append([]byte(nil), p...)
	if q.head > 0 && q.head >= len(q.msgs)/2 {
		n := copy(q.msgs, q.msgs[q.head:])
		clear(q.msgs[n:])
		q.msgs = q.msgs[:n]
		q.head = 0
	}
	q.msgs = append(q.msgs, replayMsg{op, data})
	q.next++
	n := int64(len(p)) + replayOverhead
	q.bytes += n
	return n
}

// pop forgets the oldest message and returns what it cost.
func (q *replayRing) pop() int64 {
	m := q.msgs[q.head]
	q.msgs[q.head] = replayMsg{}
	q.head++
	q.base++
	n := int64(len(m.data)) + replayOverhead
	q.bytes -= n
	if q.head == len(q.msgs) {
		q.msgs, q.head = q.msgs[:0], 0
	}
	return n
}

func (q *replayRing) len() int { return len(q.msgs) - q.head }

// from returns the held messages numbered from n on; n must be in
// [base, next].
func (q *replayRing) from(n uint64) []replayMsg {
	return q.msgs[q.head+int(n-q.base):]
}

// reset forgets everything and returns what it cost.
func (q *replayRing) reset() int64 {
	n := q.bytes
	q.msgs, q.head, q.bytes = nil, 0, 0
	q.base = q.next
	return n
}
