package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func compressible(n int) func(int) []byte {
	return func(i int) []byte {
		return []byte(strings.Repeat(fmt.Sprintf("request %d says hello; ", i), n/20+1)[:n])
	}
}

func incompressible(n int) func(int) []byte {
	return func(i int) []byte {
		r := rand.New(rand.NewPCG(uint64(i), 42))
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return b
	}
}

func sized(sizes ...int) func(int) []byte {
	return func(i int) []byte { return bytes.Repeat([]byte{'x'}, sizes[i]) }
}

func TestOverflow(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		prios  []int
		body   func(int) []byte
		// refused: index → the limit named by Push's error (ErrFull), or
		// "large" for ErrTooLarge.
		refused map[int]Limit
		// rejected: index → reason; every other ticket must be released.
		rejected map[int]Reason
	}{
		{
			name:     "reject count",
			limits:   Limits{MaxCount: 3, Overflow: Reject},
			prios:    repeat(5, 0),
			body:     sized(100, 100, 100, 100, 100),
			refused:  map[int]Limit{3: LimitCount, 4: LimitCount},
			rejected: map[int]Reason{3: ReasonOverflow, 4: ReasonOverflow},
		},
		{
			name:     "reject bytes",
			limits:   Limits{MaxBytes: 600, EntryOverhead: 100, Overflow: Reject},
			prios:    repeat(5, 0),
			body:     sized(100, 100, 100, 100, 100),
			refused:  map[int]Limit{3: LimitBytes, 4: LimitBytes},
			rejected: map[int]Reason{3: ReasonOverflow, 4: ReasonOverflow},
		},
		{
			name:     "reject bytes small fits after big refused",
			limits:   Limits{MaxBytes: 600, EntryOverhead: 100, Overflow: Reject},
			prios:    repeat(4, 0),
			body:     sized(100, 100, 300, 100),
			refused:  map[int]Limit{2: LimitBytes},
			rejected: map[int]Reason{2: ReasonOverflow},
		},
		{
			name:     "oldest count",
			limits:   Limits{MaxCount: 3, Overflow: Oldest},
			prios:    repeat(5, 0),
			rejected: map[int]Reason{0: ReasonEvicted, 1: ReasonEvicted},
		},
		{
			name:     "oldest bytes",
			limits:   Limits{MaxBytes: 600, EntryOverhead: 100, Overflow: Oldest},
			prios:    repeat(5, 0),
			body:     sized(100, 100, 100, 100, 100),
			rejected: map[int]Reason{0: ReasonEvicted, 1: ReasonEvicted},
		},
		{
			name:     "oldest bytes one big evicts several",
			limits:   Limits{MaxBytes: 300, EntryOverhead: -1, Overflow: Oldest},
			prios:    repeat(5, 0),
			body:     sized(100, 100, 100, 250, 50),
			rejected: map[int]Reason{0: ReasonEvicted, 1: ReasonEvicted, 2: ReasonEvicted},
		},
		{
			name:     "oldest evicts lowest priority first",
			limits:   Limits{MaxCount: 3, Overflow: Oldest},
			prios:    []int{5, 0, 5, 1, 9},
			rejected: map[int]Reason{1: ReasonEvicted, 3: ReasonEvicted},
		},
		{
			name:     "oldest never evicts higher priority for lower",
			limits:   Limits{MaxCount: 2, Overflow: Oldest},
			prios:    []int{5, 0, 5, 0},
			refused:  map[int]Limit{3: LimitCount},
			rejected: map[int]Reason{1: ReasonEvicted, 3: ReasonOverflow},
		},
		{
			name:     "oldest bytes refuses when lower priorities cannot make room",
			limits:   Limits{MaxBytes: 300, EntryOverhead: -1, Overflow: Oldest},
			prios:    []int{5, 0, 0},
			body:     sized(200, 50, 150),
			refused:  map[int]Limit{2: LimitBytes},
			rejected: map[int]Reason{2: ReasonOverflow},
		},
		{
			name:   "compress bytes keeps everything compressible",
			limits: Limits{MaxBytes: 3300, EntryOverhead: 100, Overflow: Compress},
			prios:  repeat(10, 0),
			body:   compressible(1000),
		},
		{
			name:     "compress bytes rejects incompressible",
			limits:   Limits{MaxBytes: 3300, EntryOverhead: 100, Overflow: Compress},
			prios:    repeat(5, 0),
			body:     incompressible(1000),
			refused:  map[int]Limit{3: LimitBytes, 4: LimitBytes},
			rejected: map[int]Reason{3: ReasonOverflow, 4: ReasonOverflow},
		},
		{
			name:     "compress count rejects",
			limits:   Limits{MaxCount: 3, Overflow: Compress},
			prios:    repeat(5, 0),
			body:     compressible(1000),
			refused:  map[int]Limit{3: LimitCount, 4: LimitCount},
			rejected: map[int]Reason{3: ReasonOverflow, 4: ReasonOverflow},
		},
		{
			name:     "too large",
			limits:   Limits{MaxBytes: 1000, EntryOverhead: 100, Overflow: Oldest},
			prios:    repeat(3, 0),
			body:     sized(100, 901, 900),
			refused:  map[int]Limit{1: "large"},
			rejected: map[int]Reason{0: ReasonEvicted, 1: ReasonTooLarge},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.limits)
			defer b.Close()
			b.Pause()
			tickets, errs := pushAll(b, tc.prios, tc.body, nil)
			for i, err := range errs {
				want, refused := tc.refused[i]
				var le *LimitError
				switch {
				case !refused && err != nil:
					t.Errorf("Push(ticket %d) = %v; want nil", i, err)
				case refused && want == "large" && !errors.Is(err, ErrTooLarge):
					t.Errorf("Push(ticket %d) = %v; want ErrTooLarge", i, err)
				case refused && want != "large" && (!errors.Is(err, ErrFull) || !errors.As(err, &le) || le.Limit != want):
					t.Errorf("Push(ticket %d) = %v; want ErrFull naming the %s limit", i, err, want)
				}
			}
			if s := b.Stats(); tc.limits.MaxCount > 0 && s.Held > tc.limits.MaxCount ||
				tc.limits.MaxBytes > 0 && s.Bytes > tc.limits.MaxBytes {
				t.Errorf("Stats() = %+v; over the limits %+v", s, tc.limits)
			}
			res, _ := collect(t, tickets, b.Resume)
			var nReleased uint64
			for i, r := range res {
				want := tc.rejected[i]
				switch {
				case want == ReasonNone && !r.out.Released:
					t.Errorf("ticket %d: outcome %+v; want released", i, r.out)
				case want != ReasonNone && (r.out.Released || r.out.Reason != want):
					t.Errorf("ticket %d: outcome %+v; want rejected %v", i, r.out, want)
				}
				if r.out.Released {
					nReleased++
					body, err := tickets[i].Body()
					if err != nil || tc.body != nil && !bytes.Equal(body, tc.body(i)) {
						t.Errorf("ticket %d: Body() = %d bytes, %v; want the original %d bytes", i, len(body), err, len(tc.body(i)))
					}
				}
			}
			s := b.Stats()
			if s.ReleasedTotal != nReleased || s.ReplayedTotal != nReleased {
				t.Errorf("ReleasedTotal %d, ReplayedTotal %d; want %d", s.ReleasedTotal, s.ReplayedTotal, nReleased)
			}
			for r := ReasonOverflow; r <= ReasonCancelled; r++ {
				var n uint64
				for _, want := range tc.rejected {
					if want == r {
						n++
					}
				}
				if s.Rejected[r.String()] != n {
					t.Errorf("Stats().Rejected[%s] = %d; want %d", r, s.Rejected[r.String()], n)
				}
			}
			if tc.limits.Overflow == Compress && len(tc.rejected) == 0 && s.CompressedTotal == 0 {
				t.Errorf("CompressedTotal = 0; want bodies compressed")
			}
			checkEmpty(t, b)
		})
	}
}

func TestCompressedBytesAccounting(t *testing.T) {
	b := New(Limits{MaxBytes: 5000, EntryOverhead: 100, Overflow: Compress})
	defer b.Close()
	b.Pause()
	body := compressible(2000)
	tickets, errs := pushAll(b, repeat(6, 0), body, nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Push(%d) = %v; want nil", i, err)
		}
	}
	s := b.Stats()
	if s.RawBytes != 6*2000 || s.StoredBytes >= s.RawBytes || s.Bytes != s.StoredBytes+6*100 || s.Bytes > 5000 {
		t.Errorf("Stats() bytes = %d raw %d stored %d; want raw 12000, stored smaller, bytes = stored + 600 ≤ 5000", s.Bytes, s.RawBytes, s.StoredBytes)
	}
	n := 0
	for _, tk := range tickets {
		if tk.Compressed() {
			n++
		}
	}
	if uint64(n) != s.CompressedTotal || n == 0 {
		t.Errorf("%d tickets compressed, CompressedTotal %d; want equal and > 0", n, s.CompressedTotal)
	}
	// A cancelled compressed ticket frees its stored bytes exactly.
	if got := b.Flush(); got != 6 {
		t.Errorf("Flush() = %d; want 6", got)
	}
	checkEmpty(t, b)
}

func TestMaxAge(t *testing.T) {
	for _, ov := range []Overflow{Reject, Oldest, Compress} {
		t.Run(ov.String(), func(t *testing.T) {
			b := New(Limits{MaxAge: 20 * time.Millisecond, MaxCount: 10, Overflow: ov})
			defer b.Close()
			b.Pause()
			old, errs := pushAll(b, []int{0, 5, 9}, compressible(200), nil)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("Push(%d) = %v; want nil", i, err)
				}
			}
			res, _ := collect(t, old, nil)
			for i, r := range res {
				if r.out.Released || r.out.Reason != ReasonExpired {
					t.Errorf("ticket %d: outcome %+v; want expired", i, r.out)
				}
				if age := old[i].Age(); age < 20*time.Millisecond {
					t.Errorf("ticket %d expired at age %v; want ≥ 20ms", i, age)
				}
			}
			checkEmpty(t, b)
			// The sweeper sleeps when empty and wakes for the next ticket.
			again := NewTicket(0, nil, "", "again")
			if err := b.Push(again); err != nil {
				t.Fatalf("Push = %v; want nil", err)
			}
			if out := waitOutcome(t, again); out.Reason != ReasonExpired {
				t.Errorf("outcome %+v; want expired", out)
			}
			// Fresh tickets are released on resume.
			b.Resume()
			fresh := NewTicket(0, nil, "", "fresh")
			if err := b.Push(fresh); err != nil {
				t.Fatalf("Push = %v; want nil", err)
			}
			if out := waitOutcome(t, fresh); !out.Released {
				t.Errorf("outcome %+v; want released", out)
			}
			fresh.Done()
			if s := b.Stats(); s.Rejected["expired"] != 4 {
				t.Errorf("Rejected[expired] = %d; want 4", s.Rejected["expired"])
			}
		})
	}
}

// TestExpireBatches holds more than one sweep batch of expired tickets.
func TestExpireBatches(t *testing.T) {
	b := New(Limits{MaxAge: time.Millisecond})
	defer b.Close()
	b.Pause()
	n := 3*expireBatch + 7
	tickets, _ := pushAll(b, repeat(n, 0), nil, nil)
	res, _ := collect(t, tickets, nil)
	for i, r := range res {
		if r.out.Reason != ReasonExpired {
			t.Fatalf("ticket %d: outcome %+v; want expired", i, r.out)
		}
	}
	checkEmpty(t, b)
}

// TestCompressRacesWithRemoval removes a ticket while its body is being
// compressed outside the lock: the result must be dropped, not applied.
func TestCompressRacesWithRemoval(t *testing.T) {
	b := New(Limits{MaxBytes: 2500, EntryOverhead: 100, Overflow: Compress})
	defer b.Close()
	b.Pause()
	body := compressible(1000)
	tickets, errs := pushAll(b, repeat(2, 0), body, nil)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b.testHookCompress = func() {
		b.testHookCompress = nil
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := tickets[0].Wait(ctx); err == nil {
			t.Error("Wait(cancelled) = nil error")
		}
	}
	third := NewTicket(0, body(2), "", nil)
	if err := b.Push(third); err != nil {
		t.Fatalf("Push(third) = %v; want room made by compressing the second", err)
	}
	if tickets[0].Compressed() {
		t.Error("the removed ticket was compressed after removal")
	}
	if !tickets[1].Compressed() {
		t.Error("the second ticket was not compressed")
	}
	if s := b.Stats(); s.Held != 2 || s.RawBytes != 2000 || s.Bytes != s.StoredBytes+200 {
		t.Errorf("Stats() held %d raw %d stored %d bytes %d; want 2 held, 2000 raw, bytes = stored + 200", s.Held, s.RawBytes, s.StoredBytes, s.Bytes)
	}
	res, _ := collect(t, []*Ticket{tickets[1], third}, b.Resume)
	for i, r := range res {
		if !r.out.Released {
			t.Errorf("ticket %d: %+v; want released", i, r.out)
		}
	}
	checkEmpty(t, b)
}

// TestRejectionRacingWithLeaving: a ticket rejected before its client left
// reports the rejection, whichever Wait's select sees first.
func TestRejectionRacingWithLeaving(t *testing.T) {
	b := New(Limits{})
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		b.Pause()
		tk := NewTicket(0, nil, "", i)
		if err := b.Push(tk); err != nil {
			t.Fatal(err)
		}
		b.Flush()
		out, err := tk.Wait(ctx)
		if err != nil || out.Reason != ReasonFlushed {
			t.Fatalf("Wait(cancelled) on a flushed ticket = %+v, %v; want flushed, nil", out, err)
		}
	}
	if s := b.Stats(); s.Rejected["flushed"] != 100 || s.Rejected["cancelled"] != 0 {
		t.Errorf("Rejected = %v; want 100 flushed, 0 cancelled", s.Rejected)
	}
}

// TestFlood pushes 100 times what the buffer may hold: the limits hold at
// every step, and every ticket is accounted for.
func TestFlood(t *testing.T) {
	const maxCount, flood = 50, 100 * 50
	for _, ov := range []Overflow{Reject, Oldest, Compress} {
		t.Run(ov.String(), func(t *testing.T) {
			l := Limits{MaxCount: maxCount, MaxBytes: 20_000, EntryOverhead: 100, Overflow: ov}
			b := New(l)
			defer b.Close()
			b.Pause()
			r := rand.New(rand.NewPCG(5, 6))
			body := compressible(1000)
			refused := 0
			for i := range flood {
				err := b.Push(NewTicket(r.IntN(5), body(i)[:r.IntN(1000)], "", nil))
				if err != nil {
					if !errors.Is(err, ErrFull) {
						t.Fatalf("Push = %v; want nil or ErrFull", err)
					}
					refused++
				}
				if s := b.Stats(); s.Held > maxCount || s.Bytes > l.MaxBytes {
					t.Fatalf("after %d pushes: held %d, bytes %d; over the limits", i+1, s.Held, s.Bytes)
				}
			}
			s := b.Stats()
			if got := s.Held + refused + int(s.Rejected["evicted"]); got != flood {
				t.Errorf("held %d + refused %d + evicted %d = %d; want %d", s.Held, refused, s.Rejected["evicted"], got, flood)
			}
			if uint64(refused) != s.Rejected["overflow"] {
				t.Errorf("refused %d; Rejected[overflow] = %d", refused, s.Rejected["overflow"])
			}
			if ov == Oldest && s.Rejected["evicted"] == 0 || ov == Compress && s.CompressedTotal == 0 {
				t.Errorf("strategy %v never applied: %+v", ov, s)
			}
			t.Logf("%v: held %d bytes %d refused %d evicted %d compressed %d", ov, s.Held, s.Bytes, refused, s.Rejected["evicted"], s.CompressedTotal)
		})
	}
}

func TestBodyDecodeFailureIsReported(t *testing.T) {
	b := New(Limits{MaxBytes: 2500, EntryOverhead: 100, Overflow: Compress})
	defer b.Close()
	b.Pause()
	tickets, _ := pushAll(b, repeat(3, 0), compressible(1000), nil)
	if !tickets[0].Compressed() {
		t.Fatal("first ticket not compressed")
	}
	b.mu.Lock()
	tickets[0].body = append([]byte(nil), tickets[0].body[:len(tickets[0].body)/2]...) // truncated frame
	b.mu.Unlock()
	if body, err := tickets[0].Body(); err == nil {
		t.Errorf("Body() of a truncated frame = %d bytes, nil; want an error", len(body))
	}
	b.mu.Lock()
	tickets[1].body, tickets[1].rawLen = b.zstd.encode([]byte("short")), 999 // wrong length
	tickets[1].compressed = true
	b.mu.Unlock()
	if _, err := tickets[1].Body(); err == nil || !strings.Contains(err.Error(), "want 999") {
		t.Errorf("Body() with a length mismatch = %v; want an error naming it", err)
	}
	b.Flush()
}
