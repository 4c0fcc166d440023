package wsrelay

import "sync"

// Buffers are borrowed while a session moves bytes and returned as soon as
// it is idle again, so an idle session owns no big buffer (the memory per
// idle session target is under 16 KiB for both of its sockets).

const bigReadSize = 16 << 10

var bigReadPool = sync.Pool{New: func() any { b := make([]byte, bigReadSize); return &b }}

// msgPool holds message and output buffers. Oversized ones are not kept,
// so one huge message does not pin its buffer for ever.
var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledCap = 256 << 10

func getBuf() *[]byte { return msgPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if b == nil || cap(*b) > maxPooledCap {
		return
	}
	*b = (*b)[:0]
	msgPool.Put(b)
}
