package queue

import "slices"

// AppendHeld appends every ticket held now to dst, oldest first, and
// returns it. It holds the buffer's lock only to copy the pointers (a
// walk of the age list, ~5 ns a ticket), so a caller looking at many
// tickets does the looking (Meta, Body, Backend) after it, unlocked; a
// ticket may be released or rejected meanwhile.
func (b *Buffer) AppendHeld(dst []*Ticket) []*Ticket {
	b.mu.Lock()
	defer b.mu.Unlock()
	dst = slices.Grow(dst, b.held)
	for t := b.ahead; t != nil; t = t.anext {
		dst = append(dst, t)
	}
	return dst
}
