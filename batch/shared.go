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
// a reservation every 50 ms per process, not one per request.
type sharedSlots struct {
	budget  ledger.RateBudget
	fail    func(error) // told when the ledger cannot give slots: the run stops
	account string
	rate    float64
	burst   int
	block   int
	now     func() time.Time

	mu     sync.Mutex
	next   time.Time
	every  time.Duration
	left   int
	lag    time.Duration // how late the block came back from the ledger (maxLag)
	booked time.Time     // when a reservation last found the account's schedule full
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
	return &sharedSlots{budget: b, fail: fail, account: account, rate: rate, burst: max(burst, 1), block: block, now: now}
}

// Next returns the caller's slot: when its request may go (at), and when
// it is due (at, or later by the lag its block came back with), which
// staleSlot counts from. It reserves a block when the last is used up.
// Callers take slots in turn, each its own; slots of the block that passed
// unused are given up.
func (s *sharedSlots) Next(ctx context.Context) (at, due time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for now := s.now(); s.left > 0 && now.Sub(s.next.Add(s.lag)) > staleSlot; s.left-- {
		s.next = s.next.Add(s.every)
	}
	if s.left == 0 {
		first, every, err := s.budget.Reserve(ctx, s.account, s.block, s.rate, s.burst)
		if err != nil {
			if ctx.Err() == nil {
				s.fail(err)
			}
			return time.Time{}, time.Time{}, err
		}
		now := s.now()
		// A first slot more than a slot away means the account's rate is
		// taken: by this process or by others. Then this process's own
		// rate falling short of --rate is the sharing, not a fault.
		if first.Sub(now) > every {
			s.booked = time.Now() // as flight.go reads it
		}
		s.next, s.every, s.left = first, every, s.block
		if s.lag = now.Sub(first); s.lag < 0 || s.lag > maxLag {
			s.lag = 0
		}
	}
	at = s.next
	s.next = s.next.Add(s.every)
	s.left--
	return at, at.Add(s.lag), nil
}

// bookedSince reports whether a reservation found the account's schedule
// full at t or later.
func (s *sharedSlots) bookedSince(t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.booked.Before(t)
}
