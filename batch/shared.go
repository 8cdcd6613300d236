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
// a block of slots at a time, so the ledger sees a reservation a block,
// not one a request, and asks for the next block while half of one is
// left, so that it comes back before its slots are due: a block spans
// blockTrips of the ledger's round trips, at least 50 ms of the rate (a
// ledger nearby), at most a quarter of a second (slots a process holds
// and may leave unused).
type sharedSlots struct {
	budget             ledger.RateBudget
	fail               func(error) // told when the ledger cannot give slots: the run stops
	account            string
	rate               float64
	burst              int
	minBlock, maxBlock int
	now                func() time.Time

	mu     sync.Mutex
	ask    int // slots to ask for in the next block
	size   int // slots in the block being handed out
	next   time.Time
	every  time.Duration
	left   int
	ahead  <-chan reservation // the next block, asked for; nil when none is
	booked time.Time          // when a reservation last found the account's schedule full
}

// blockTrips is how many of the ledger's round trips a block spans: half
// a block must outlast the ask for the next (one process 120 ms from its
// ledger, asking for 50 ms of slots when the last ran out, sent 64/s of
// 150).
const blockTrips = 4

// reservation is a block of slots as the ledger gave it.
type reservation struct {
	n     int
	first time.Time
	every time.Duration
	after time.Time // the end of this process's slots when it was asked for
	rtt   time.Duration
	back  time.Time
	err   error
}

// staleSlot is how late a request may go after its slot. A slot missed by
// more (the process was held up: a pause, a loaded machine) is given up,
// not used late: the other processes sent on time meanwhile, so a late
// request adds to a second they filled (three processes at --rate 150,
// one stopped for 300 ms: up to 172 requests in one second).
const staleSlot = 20 * time.Millisecond

func newSharedSlots(b ledger.RateBudget, account string, rate float64, burst int, now func() time.Time, fail func(error)) *sharedSlots {
	minBlock := max(1, int(math.Ceil(rate/20)))
	return &sharedSlots{budget: b, fail: fail, account: account, rate: rate, burst: max(burst, 1),
		minBlock: minBlock, maxBlock: max(minBlock, int(math.Ceil(rate/4))), ask: minBlock, now: now}
}

// Next returns when the caller's request may go. Callers take slots in
// turn, each its own. Slots of the block that passed unused are given up;
// a new block's first is handed out as it is (a round trip old when the
// account was idle), and the caller gives it up if too late
// (limiter.sharedSlot).
func (s *sharedSlots) Next(ctx context.Context) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for now := s.now(); s.left > 0 && now.Sub(s.next) > staleSlot; s.left-- {
		s.next = s.next.Add(s.every)
	}
	if s.left == 0 {
		r, err := s.nextBlock(ctx)
		if err != nil {
			return time.Time{}, err
		}
		s.start(r)
	}
	at := s.next
	s.next = s.next.Add(s.every)
	s.left--
	if s.ahead == nil && s.left <= s.size/2 {
		// Not the caller's context: the block is for whoever comes next.
		ch := make(chan reservation, 1)
		n, after := s.ask, s.next.Add(time.Duration(s.left)*s.every)
		go func() { ch <- s.reserve(context.WithoutCancel(ctx), n, after) }()
		s.ahead = ch
	}
	return at, nil
}

// nextBlock returns the block asked for ahead, or asks for one now. An
// ask ahead that failed is made again once: it had half a block's time.
func (s *sharedSlots) nextBlock(ctx context.Context) (reservation, error) {
	if s.ahead != nil {
		var r reservation
		select {
		case r = <-s.ahead:
			s.ahead = nil
		case <-ctx.Done():
			return r, ctx.Err()
		}
		if r.err == nil {
			return r, nil
		}
	}
	r := s.reserve(ctx, s.ask, s.next)
	if r.err != nil && ctx.Err() == nil {
		s.fail(r.err)
	}
	return r, r.err
}

// reserve asks the ledger for n slots; after is when this process's slots
// end.
func (s *sharedSlots) reserve(ctx context.Context, n int, after time.Time) reservation {
	sent := s.now()
	first, every, err := s.budget.Reserve(ctx, s.account, n, s.rate, s.burst)
	back := s.now()
	return reservation{n: n, first: first, every: every, after: after, rtt: back.Sub(sent), back: back, err: err}
}

// start hands out the slots of r from now on.
func (s *sharedSlots) start(r reservation) {
	// A first slot half a slot or more past this process's own (or now)
	// means others hold the slots between. Then this process's own rate
	// falling short of --rate is the sharing, not a fault.
	if r.first.Sub(maxTime(r.back, r.after)) >= r.every/2 {
		s.booked = time.Now() // the clock flight.go reads it by
	}
	s.next, s.every, s.size, s.left = r.first, r.every, r.n, r.n
	s.ask = min(max(s.minBlock, int(math.Ceil(blockTrips*s.rate*r.rtt.Seconds()))), s.maxBlock)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bookedSince reports whether a reservation found the account's schedule
// full at t or later.
func (s *sharedSlots) bookedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.booked.Before(t)
}
