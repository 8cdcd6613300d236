package batch

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// breaker trips when most of the recent requests failed transiently: the
// provider or the network is broken, and burning the rest of the file
// against it would only turn queued rows into unknown ones.
type breaker struct {
	mu    sync.Mutex
	ring  ring // true = transient failure
	ratio float64
}

func newBreaker(size int, ratio float64) *breaker {
	return &breaker{ring: newRing(size), ratio: ratio}
}

// observe records one outcome and reports whether the breaker trips.
func (b *breaker) observe(transient bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring.add(transient)
	return b.ring.filled == len(b.ring.window) && float64(b.ring.set) >= b.ratio*float64(b.ring.filled)
}

// ring holds the last len(window) of a run of yes-or-no answers and how
// many of them were yes.
type ring struct {
	window []bool
	next   int
	filled int
	set    int
}

func newRing(size int) ring { return ring{window: make([]bool, max(size, 1))} }

func (r *ring) add(v bool) {
	if r.filled == len(r.window) {
		if r.window[r.next] {
			r.set--
		}
	} else {
		r.filled++
	}
	r.window[r.next] = v
	if v {
		r.set++
	}
	r.next = (r.next + 1) % len(r.window)
}

// limiter is the run's send-rate limiter, shared by every request of the
// run (recharges and status enquiries: the provider's limit is the
// account's). The 429 policy (throttle) lowers and raises its rate.
type limiter struct {
	lim     *rate.Limiter
	base    rate.Limit
	burst   int
	now     func() time.Time
	granted atomic.Int64 // requests let through
	lastAt  atomic.Int64 // when the last was, Unix ns
	waiting atomic.Int64 // requests waiting in Wait now
	// shared, when not nil, is the account's rate budget on a shared
	// ledger: a request first takes its slot there.
	shared *sharedSlots

	// win holds the last rate+burst requests: a request waits until the
	// oldest is a second old, so no one-second window ever holds more than
	// rate+burst, even when a stall bunches up requests whose tokens were
	// granted on time. A request counts from its answer if that came soon
	// after it was written out (see done): it reached the provider before
	// its answer, so the window bounds arrivals there too.
	winMu   sync.Mutex
	win     []time.Time
	winSeq  []uint64
	winNext int
	issued  uint64
}

// ticket is one request's place in the window, for done; the zero ticket
// has none (no window is kept).
type ticket struct {
	slot int
	seq  uint64
}

func newLimiter(perSecond float64, burst int, now func() time.Time) *limiter {
	base := rate.Inf
	if perSecond > 0 {
		base = rate.Limit(perSecond)
	}
	if burst < 1 {
		burst = 1
	}
	l := &limiter{lim: rate.NewLimiter(base, burst), base: base, burst: burst, now: now}
	if perSecond > 0 && perSecond < maxWindow {
		n := int(math.Floor(perSecond)) + burst
		l.win = make([]time.Time, n)
		l.winSeq = make([]uint64, n)
	}
	return l
}

// maxWindow is the rate above which the one-second window is not kept: a
// ring of that many timestamps would cost more than it protects.
const maxWindow = 100_000

// Wait blocks until a request may go out. It uses the run's context, never
// a per-request timeout, so a long wait is a wait and not a failure.
func (l *limiter) Wait(ctx context.Context) (ticket, error) {
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	// The run's own rate first (the 429 policy lowers it): on a shared
	// ledger it paces how fast this process takes the account's slots.
	if err := l.lim.Wait(ctx); err != nil {
		return ticket{}, err
	}
	if l.shared != nil {
		if err := l.sharedSlot(ctx); err != nil {
			return ticket{}, err
		}
	}
	if l.win == nil {
		l.granted.Add(1)
		l.lastAt.Store(l.now().UnixNano())
		return ticket{}, nil
	}
	for {
		l.winMu.Lock()
		now := l.now()
		oldest := l.win[l.winNext]
		wait := oldest.Add(time.Second).Sub(now)
		if oldest.IsZero() || wait <= 0 {
			l.issued++
			t := ticket{slot: l.winNext, seq: l.issued}
			l.win[t.slot], l.winSeq[t.slot] = now, t.seq
			l.winNext = (l.winNext + 1) % len(l.win)
			l.winMu.Unlock()
			l.granted.Add(1)
			l.lastAt.Store(now.UnixNano())
			return t, nil
		}
		l.winMu.Unlock()
		if err := sleep(ctx, wait); err != nil {
			return ticket{}, err
		}
	}
}

// sharedSlot waits for the request's slot of the account's rate. A slot
// more than staleSlot past when the request is ready to go is given up for
// the next free one, once: a request late twice goes however late, so a
// process always slow to wake still sends. A request up to staleSlot late
// adds about rate x 20 ms (2%) to a second.
func (l *limiter) sharedSlot(ctx context.Context) error {
	for tries := 0; ; tries++ {
		at, err := l.shared.Next(ctx)
		if err != nil {
			return err
		}
		if err := sleep(ctx, at.Sub(l.now())); err != nil {
			return err
		}
		if tries > 0 || l.now().Sub(at) <= staleSlot {
			return nil
		}
	}
}

// maxArrivalDelay bounds how much later than it was written a request
// counts in the window. Counting it from its answer (after it reached the
// provider) would be exact, but would cap the rate at (rate+burst)/(1s +
// latency). This much covers the provider's side of the delay between our
// write and its clock: on a quiet two-core machine the sandbox stamped
// requests up to 10 ms after they were written, so 5 ms let 2,002 through
// in one second at --rate 2000. Against a provider slower than this, the
// rate is at least (rate+burst)/1.02 s, 98% of it.
const maxArrivalDelay = 20 * time.Millisecond

// done says the request holding t has been answered (or given up on); wrote
// is when it was written out, zero if unknown. It then counts from its
// answer, but no later than maxArrivalDelay after it was written (or, not
// known to be written, after it was let through): delays on our side
// before the write, a busy process's, are covered whatever their length.
// A slot already taken by a later request is left alone.
func (l *limiter) done(t ticket, wrote time.Time) {
	if t.seq == 0 {
		return
	}
	l.winMu.Lock()
	if l.winSeq[t.slot] == t.seq {
		at, from := l.now(), l.win[t.slot]
		if wrote.After(from) {
			from = wrote
		}
		if limit := from.Add(maxArrivalDelay); at.After(limit) {
			at = limit
		}
		if at.After(l.win[t.slot]) {
			l.win[t.slot] = at
		}
	}
	l.winMu.Unlock()
}

// setRate sets the rate: perSecond, or the configured one when 0 (no
// limit, when that is none). The one-second window keeps the configured
// rate's size: the rate is only ever lowered below it.
func (l *limiter) setRate(perSecond float64) {
	if perSecond <= 0 {
		l.lim.SetLimit(l.base)
		return
	}
	l.lim.SetLimit(rate.Limit(perSecond))
}

// rate is the rate now; 0 for none.
func (l *limiter) rate() float64 {
	if r := l.lim.Limit(); r != rate.Inf {
		return float64(r)
	}
	return 0
}

// state returns the transient failures in the window and its size.
func (b *breaker) state() (bad, size int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ring.set, len(b.ring.window)
}

// knownRefs trips when most of the rows a run sends for the first time
// come back 18: the provider already holds their referenceids, so the
// file was sent before, most likely from another ledger (a mistyped
// --ledger opens a new, empty one). Rows that failed then without the
// provider keeping their referenceid would be charged now, and paid
// twice where a person had already sent them again under new ones.
// Unlike the breaker it trips before its window is full: the first rows
// of a file answered 18 are the whole sign.
type knownRefs struct {
	mu   sync.Mutex
	ring ring // true = answered 18
	trip int
}

func newKnownRefs(size, trip int) *knownRefs {
	r := newRing(size)
	return &knownRefs{ring: r, trip: min(max(trip, 1), len(r.window))}
}

// observe records one first send's answer and reports whether the rows
// answered 18 reached the trip count within the window.
func (k *knownRefs) observe(known bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ring.add(known)
	return k.ring.set >= k.trip
}

// state returns the rows answered 18 in the window and how many it holds.
func (k *knownRefs) state() (known, filled int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ring.set, k.ring.filled
}
