package batch

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// sharedSlots hands out send times drawn from a provider account's rate
// budget, which every process on a shared ledger draws from: the rate
// belongs to the account, not to a process (SPEC section 4). It reserves
// a block of slots at a time, about 50 ms of the rate, so the ledger sees
// a reservation every 50 ms per process, not one per request; and the
// next block while half of one is left, so a block comes back before its
// slots are due. A block spans at least four of the ledger's round trips,
// so half of one outlasts one (at 50 ms a block, asked for when the last
// ran out, one process on a ledger 120 ms away sent 64/s of 150).
type sharedSlots struct {
	budget   ledger.RateBudget
	fail     func(error) // told when the ledger cannot give slots: the run stops
	account  string
	rate     float64
	burst    int
	minBlock int
	now      func() time.Time

	mu     sync.Mutex
	block  int // slots to ask for next
	size   int // in the block being handed out
	next   time.Time
	every  time.Duration
	left   int
	lag    time.Duration      // how late the block came back from the ledger (maxLag)
	ahead  <-chan reservation // the next block, asked for; nil when none is
	booked time.Time          // when a reservation last found the account's schedule full
}

// reservation is a block of slots as the ledger gave it.
type reservation struct {
	n     int
	first time.Time
	every time.Duration
	after time.Time // the end of this process's block when it was asked for
	rtt   time.Duration
	back  time.Time
	err   error
}

// staleSlot is how late a request may go after its slot. A slot missed by
// more (the process was held up: a pause, a loaded machine) is given up,
// not used late: the other processes sent on time meanwhile, so a late
// request adds to a second they filled (three processes at --rate 150,
// one stopped for 300 ms: up to 172 requests in one second). A request
// up to this late adds about rate x 20 ms (2%) to a second.
const staleSlot = 20 * time.Millisecond

// maxLag is how late a new block may come back from the ledger and still
// be used from then on: its first slot is the account's next free one, by
// the database's clock when the reservation began, so it comes back a
// round trip old. Over this the process was held up, not the ledger slow.
const maxLag = 100 * time.Millisecond

func newSharedSlots(b ledger.RateBudget, account string, rate float64, burst int, now func() time.Time, fail func(error)) *sharedSlots {
	block := max(1, int(math.Ceil(rate/20)))
	return &sharedSlots{budget: b, fail: fail, account: account, rate: rate, burst: max(burst, 1),
		minBlock: block, block: block, now: now}
}

// Next returns the caller's slot: when its request may go (at), and when
// it is due (at, or later by the lag its block came back with), which
// staleSlot counts from. Callers take slots in turn, each its own; slots
// of the block that passed unused are given up, not a new block's: its
// first is the account's next free one, or after this process's own.
func (s *sharedSlots) Next(ctx context.Context) (at, due time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for now := s.now(); s.left > 0 && now.Sub(s.next.Add(s.lag)) > staleSlot; s.left-- {
		s.next = s.next.Add(s.every)
	}
	if s.left == 0 {
		var r reservation
		if s.ahead != nil {
			select {
			case r = <-s.ahead:
				s.ahead = nil
			case <-ctx.Done():
				return time.Time{}, time.Time{}, ctx.Err()
			}
		} else {
			r = s.reserve(ctx, s.block, time.Time{})
		}
		if r.err != nil {
			if ctx.Err() == nil {
				s.fail(r.err)
			}
			return time.Time{}, time.Time{}, r.err
		}
		s.start(r)
	}
	at = s.next
	s.next = s.next.Add(s.every)
	s.left--
	if s.ahead == nil && s.left <= s.size/2 {
		// The caller's context is not the block's: the next caller takes it.
		ch := make(chan reservation, 1)
		n, after := s.block, s.next.Add(time.Duration(s.left)*s.every)
		go func() { ch <- s.reserve(context.WithoutCancel(ctx), n, after) }()
		s.ahead = ch
	}
	return at, at.Add(s.lag), nil
}

// reserve asks the ledger for n slots; after is when this process's slots
// asked for so far end.
func (s *sharedSlots) reserve(ctx context.Context, n int, after time.Time) reservation {
	sent := s.now()
	first, every, err := s.budget.Reserve(ctx, s.account, n, s.rate, s.burst)
	back := s.now()
	return reservation{n: n, first: first, every: every, after: after, rtt: back.Sub(sent), back: back, err: err}
}

// start hands out the slots of r from now on.
func (s *sharedSlots) start(r reservation) {
	// A first slot more than a slot past this process's own (or now) means
	// the account's rate is taken by others. Then this process's own rate
	// falling short of --rate is the sharing, not a fault.
	ref := r.back
	if r.after.After(ref) {
		ref = r.after
	}
	if r.first.Sub(ref) > r.every {
		s.booked = time.Now() // as flight.go reads it
	}
	s.next, s.every, s.size, s.left = r.first, r.every, r.n, r.n
	if s.lag = r.back.Sub(r.first); s.lag < 0 || s.lag > maxLag {
		s.lag = 0
	}
	s.block = min(max(s.minBlock, int(math.Ceil(4*s.rate*r.rtt.Seconds()))), max(s.minBlock, int(math.Ceil(s.rate))))
}

// bookedSince reports whether a reservation found the account's schedule
// full at t or later.
func (s *sharedSlots) bookedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.booked.Before(t)
}
