package batch

import (
	"container/list"
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// How many requests may be in flight.
//
// The rate limiter is the run's clock, as in an open-model load tool (k6's
// arrival-rate executors, vegeta): requests start when the rate allows, and
// concurrency is whatever it takes to keep that pace. By Little's law that
// is rate × latency, so the limit follows the observed latency with
// headroom; it also grows while requests wait for a free slot and the
// limiter has tokens to spare (the pool, not the rate, is what holds the
// run back), and shrinks multiplicatively when more than 5% of the
// answers are timeouts and 5xx (TCP's AIMD), down to a quarter of what
// the rate needs, climbing back 10% a second as they stop. It is capped
// by --max-in-flight.
//
// Latency-gradient limiters (TCP Vegas, Netflix's concurrency-limits)
// read rising latency as queueing and shrink: right for protecting a
// server from its callers, wrong here, where the rate is the provider
// account's contract and a provider that answers slower needs more
// requests in flight to be sent the same rate, not fewer.

// Tuning of the controller.
const (
	inFlightHeadroom = 1.25                   // limit over rate × latency
	inFlightSpare    = 2                      // and a few more
	inFlightMin      = 2                      // never fewer slots than this
	inFlightStart    = 8                      // unlimited rate: first limit
	latencyPrior     = 500 * time.Millisecond // assumed before the first answer
	latencyWeight    = 0.1                    // of each answer in the average
	growFactor       = 1.25                   // per evaluation while pool-bound
	cutFactor        = 0.75                   // on timeouts and 5xx
	cutFloor         = 0.25                   // of what the rate needs: the lowest a cut goes
	overloadShare    = 0.05                   // of answers that makes a cut
	overloadMin      = 2                      // and at least this many
	recoverPerSecond = 0.10                   // the cut ceiling climbs back
	spareTokens      = 0.95                   // sent below this share of the rate: tokens to spare
)

// concurrency decides the in-flight limit. It is fed every answer's
// latency (observe) and, every so often, what the gate and the limiter saw
// (adjust). Its clock is injected, so tests pin time.
type concurrency struct {
	mu    sync.Mutex
	now   func() time.Time
	fixed bool // --workers N: the limit never moves
	max   int  // --max-in-flight (or N)

	limit   float64
	ceiling float64 // lowered by timeouts and 5xx; max otherwise
	lat     float64 // moving average of answer latency, seconds
	seen    bool    // an answer has been observed

	start         time.Time // of the current evaluation interval
	granted       int64     // the limiter's count at its start
	answers, over int       // in it
	lastCut       time.Time
}

// newConcurrency makes the controller: fixed > 0 pins the limit to it,
// else it starts from rate × latencyPrior and moves up to maxInFlight.
func newConcurrency(fixed, maxInFlight int, rate float64, now func() time.Time) *concurrency {
	c := &concurrency{now: now, start: now(), lat: latencyPrior.Seconds()}
	if fixed > 0 {
		c.fixed, c.max, c.limit, c.ceiling = true, fixed, float64(fixed), float64(fixed)
		return c
	}
	c.max = max(maxInFlight, inFlightMin)
	c.ceiling = float64(c.max)
	c.limit = c.clamp(max(c.need(rate), inFlightStart))
	return c
}

// need is Little's law with headroom: what keeps rate going at the
// latency seen so far. Zero for no rate limit.
func (c *concurrency) need(rate float64) float64 {
	if rate <= 0 {
		return 0
	}
	// Less a hair: a latency a rounding error above 100 ms is 100 ms.
	return math.Ceil(rate*c.lat*inFlightHeadroom-1e-6) + inFlightSpare
}

func (c *concurrency) clamp(v float64) float64 {
	return max(float64(inFlightMin), min(v, c.ceiling, float64(c.max)))
}

// observe takes one answer's latency; overload says it was a timeout or
// an HTTP 5xx. It returns the moving average of latency, with the answer.
func (c *concurrency) observe(lat time.Duration, overload bool) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers++
	if overload {
		c.over++
	}
	s := lat.Seconds()
	if !c.seen {
		c.lat, c.seen = s, true
	} else {
		c.lat += latencyWeight * (s - c.lat)
	}
	return time.Duration(c.lat * float64(time.Second))
}

// sample is what the engine sees now, for adjust.
type sample struct {
	rate         float64 // the limiter's rate now; 0 = none
	granted      int64   // requests the limiter let through since the run began
	slotWaiters  int     // requests waiting for a slot now
	tokenWaiters int64   // requests holding a slot, waiting for the limiter now
	peakOut      int     // most requests out at once since the last adjust
}

// adjust re-evaluates the limit once an interval has passed (long enough
// to hold about 20 of the rate's requests, 0.1 to 1 s) and returns it.
func (c *concurrency) adjust(s sample) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed {
		return int(c.limit)
	}
	now := c.now()
	dt := now.Sub(c.start)
	if dt < evalEvery(s.rate) {
		return int(c.limit)
	}
	sent := s.granted - c.granted
	need := c.need(s.rate)
	cool := max(time.Second, time.Duration(c.lat*float64(time.Second)))
	overloaded := c.over >= overloadMin && float64(c.over) >= overloadShare*float64(c.answers)
	cut := false
	switch {
	case overloaded && now.Sub(c.lastCut) >= cool:
		// The provider is struggling: fewer requests at once, whatever
		// the rate asks (multiplicative decrease), but not below a
		// quarter of what the rate needs: a provider failing for good
		// is the breaker's to stop.
		c.ceiling = max(float64(inFlightMin), c.limit*cutFactor, need*cutFloor)
		c.limit = c.ceiling
		c.lastCut, cut = now, true
	case s.slotWaiters > 0 && s.tokenWaiters == 0 && (s.rate <= 0 || float64(sent) < spareTokens*s.rate*dt.Seconds()):
		// Requests wait for a slot, none for the limiter, and fewer
		// went than the rate allowed: the limiter has tokens to spare,
		// the in-flight limit holds the run back.
		c.limit = max(c.limit*growFactor+1, need)
	case c.limit < need:
		c.limit = need // the latency rose
	case need > 0 && c.limit > need && float64(s.peakOut) < need:
		c.limit = max(need, c.limit*0.9) // slots unused since the latency fell
	}
	if !cut && !overloaded && c.ceiling < float64(c.max) {
		c.ceiling = min(float64(c.max), c.ceiling*(1+recoverPerSecond*dt.Seconds())+1)
	}
	c.limit = c.clamp(c.limit)
	c.start, c.granted, c.answers, c.over = now, s.granted, 0, 0
	return int(c.limit)
}

// evalEvery is how long an evaluation interval lasts at rate.
func evalEvery(rate float64) time.Duration {
	if rate <= 0 {
		return 100 * time.Millisecond
	}
	d := time.Duration(20 / rate * float64(time.Second))
	return min(max(d, 100*time.Millisecond), time.Second)
}

// state is the controller's view, for the summary and the WARN line.
func (c *concurrency) state() (limit, maxInFlight int, fixed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.limit), c.max, c.fixed
}

// errStopped is why a wait ended when the engine stopped.
var errStopped = errors.New("stopped")

// gate bounds the requests in flight (a slot is held from before the
// rate limiter's token to the answer). Its limit moves while requests
// wait; waiters are served first come, first served.
type gate struct {
	mu      sync.Mutex
	limit   int
	held    int
	waiters list.List // of chan struct{}
	blocked int64     // acquisitions that had to wait
	out     int       // requests on the wire
	peakOut int       // most on the wire since the last peek
	maxOut  int       // most on the wire in the run
}

func newGate(limit int) *gate { return &gate{limit: max(limit, 1)} }

// acquire takes a slot, waiting for one while ctx lasts.
func (g *gate) acquire(ctx context.Context) error {
	g.mu.Lock()
	if g.held < g.limit && g.waiters.Len() == 0 {
		g.held++
		g.mu.Unlock()
		return nil
	}
	g.blocked++
	ch := make(chan struct{})
	el := g.waiters.PushBack(ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-ch: // granted meanwhile: hand it on
			g.mu.Unlock()
			g.release()
		default:
			g.waiters.Remove(el)
			g.mu.Unlock()
		}
		return context.Cause(ctx)
	}
}

// release gives a slot back.
func (g *gate) release() {
	g.mu.Lock()
	g.held--
	g.grant()
	g.mu.Unlock()
}

// grant hands free slots to waiters; g.mu is held.
func (g *gate) grant() {
	for g.held < g.limit && g.waiters.Len() > 0 {
		ch := g.waiters.Remove(g.waiters.Front()).(chan struct{})
		g.held++
		close(ch)
	}
}

// setLimit moves the limit; a lower one takes effect as slots come back.
func (g *gate) setLimit(n int) {
	g.mu.Lock()
	g.limit = max(n, 1)
	g.grant()
	g.mu.Unlock()
}

// sending counts a request going on the wire (+1) or answered (-1).
func (g *gate) sending(d int) {
	g.mu.Lock()
	g.out += d
	g.peakOut = max(g.peakOut, g.out)
	g.maxOut = max(g.maxOut, g.out)
	g.mu.Unlock()
}

// snapshot returns the requests waiting for a slot now, the count of
// those that ever waited, and the peak on the wire since the last
// snapshot.
func (g *gate) snapshot() (waiting int, blocked int64, peakOut int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	waiting, blocked, peakOut = g.waiters.Len(), g.blocked, g.peakOut
	g.peakOut = g.out
	return waiting, blocked, peakOut
}

// counts returns the requests on the wire now, the most in the run and
// the current limit.
func (g *gate) counts() (out, maxOut, limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out, g.maxOut, g.limit
}

// peek is snapshot without resetting the peak.
func (g *gate) peek() (waiting int, blocked int64, peakOut int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiters.Len(), g.blocked, g.peakOut
}
