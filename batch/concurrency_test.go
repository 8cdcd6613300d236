package batch

import (
	"context"
	"errors"
	"testing"
	"time"
)

// clock is a test clock that moves only when told.
type clock struct{ t time.Time }

func newTestClock() *clock               { return &clock{t: time.Unix(1_000_000, 0)} }
func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// feed gives the controller n answers of latency lat, overloads of them
// timeouts or 5xx.
func feed(c *concurrency, n int, lat time.Duration, overloads int) {
	for i := range n {
		c.observe(lat, i < overloads)
	}
}

// steady is a sample of a run the rate holds: some requests wait for the
// limiter, the rate's tokens all went.
func steady(rate float64, granted *int64, dt time.Duration, out int) sample {
	*granted += int64(rate * dt.Seconds())
	return sample{rate: rate, granted: *granted, tokenWaiters: 3, slotWaiters: 5, peakOut: out}
}

// The limit follows rate x latency with headroom: 200/s at 100 ms needs
// 20 in flight, at 1 s 200.
func TestConcurrencyFollowsRateTimesLatency(t *testing.T) {
	clk := newTestClock()
	c := newConcurrency(0, 256, 200, clk.now)
	if got, want := int(c.limit), int(200*latencyPrior.Seconds()*inFlightHeadroom)+inFlightSpare; got != want {
		t.Fatalf("before any answer: limit %d, want %d (rate x the prior latency)", got, want)
	}
	var granted int64
	var limit int
	for range 30 { // 3 s of answers at 100 ms
		feed(c, 20, 100*time.Millisecond, 0)
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, 20))
	}
	if want := 27; limit != want { // ceil(200 x 0.1 x 1.25) + 2
		t.Errorf("at 100 ms: limit %d, want %d", limit, want)
	}
	for range 30 { // the provider slows to 1 s
		feed(c, 20, time.Second, 0)
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, limit))
	}
	if want := 252; limit != want { // ceil(200 x 1 x 1.25) + 2
		t.Errorf("at 1 s: limit %d, want %d", limit, want)
	}
	for range 50 { // and speeds up again: the unused slots go
		feed(c, 20, 100*time.Millisecond, 0)
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, 20))
	}
	if want := 27; limit != want {
		t.Errorf("back at 100 ms: limit %d, want %d", limit, want)
	}
}

// Requests waiting for a slot while none waits for the limiter and the
// rate's tokens were not all used: the limit grows, every interval, to
// the cap. A limiter with waiters, or every token used, stops it.
func TestConcurrencyGrowsOnlyWhenThePoolHoldsTheRateBack(t *testing.T) {
	clk := newTestClock()
	c := newConcurrency(0, 256, 200, clk.now)
	feed(c, 50, 100*time.Millisecond, 0)
	var granted int64
	limit := 0
	for range 30 {
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, 20))
	}
	if limit != 27 {
		t.Fatalf("setup: limit %d, want 27", limit)
	}
	// The latency estimate lags (no answer has come back yet): slots are
	// all taken, and 5 of the 20 tokens in 100 ms went.
	for i := range 12 {
		prev := c.limit
		clk.advance(100 * time.Millisecond)
		granted += 5
		limit = c.adjust(sample{rate: 200, granted: granted, slotWaiters: 40, peakOut: limit})
		if want := min(256, int(prev*growFactor+1)); limit != want {
			t.Fatalf("interval %d pool-bound: limit %d, want %d (x%.2f + 1)", i, limit, want, growFactor)
		}
		if limit == 256 {
			break
		}
	}
	if limit != 256 {
		t.Fatalf("after growing: limit %d, want the cap 256", limit)
	}

	c = newConcurrency(0, 256, 200, clk.now)
	feed(c, 50, 100*time.Millisecond, 0)
	for range 30 {
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, 20))
	}
	for _, tc := range []struct {
		name                string
		sent, slots, tokens int
	}{
		{"requests wait for the limiter", 5, 40, 2},
		{"every token went", 20, 40, 0},
		{"nothing waits for a slot", 5, 0, 0},
	} {
		clk.advance(100 * time.Millisecond)
		granted += int64(tc.sent)
		s := sample{rate: 200, granted: granted, slotWaiters: tc.slots, tokenWaiters: int64(tc.tokens), peakOut: 20}
		if got := c.adjust(s); got != limit {
			t.Errorf("%s: limit %d, want it to stay %d", tc.name, got, limit)
		}
	}
}

// Timeouts and 5xx cut the limit by a quarter, once per second at most,
// whatever Little's law asks; it climbs back as they stop.
func TestConcurrencyShrinksOnTimeoutsAnd5xx(t *testing.T) {
	clk := newTestClock()
	c := newConcurrency(0, 256, 200, clk.now)
	var granted int64
	feed(c, 50, 500*time.Millisecond, 0)
	limit := 0
	for range 10 {
		clk.advance(100 * time.Millisecond)
		limit = c.adjust(steady(200, &granted, 100*time.Millisecond, 100))
	}
	if limit != 127 { // ceil(200 x 0.5 x 1.25) + 2
		t.Fatalf("setup: limit %d, want 127", limit)
	}
	start := 127.0
	cut1 := int(start * cutFactor)
	cut2 := int(float64(cut1) * cutFactor)
	feed(c, 20, 500*time.Millisecond, 2) // 10%: a cut
	clk.advance(100 * time.Millisecond)
	if got, want := c.adjust(steady(200, &granted, 100*time.Millisecond, 100)), cut1; got != want {
		t.Fatalf("after 10%% timeouts: limit %d, want %d", got, want)
	}
	feed(c, 20, 500*time.Millisecond, 10) // more, within the second: no second cut
	clk.advance(100 * time.Millisecond)
	if got, want := c.adjust(steady(200, &granted, 100*time.Millisecond, 90)), cut1; got != want {
		t.Fatalf("more timeouts 100 ms later: limit %d, want still %d", got, want)
	}
	clk.advance(time.Second)
	feed(c, 20, 500*time.Millisecond, 10)
	if got, want := c.adjust(steady(200, &granted, 100*time.Millisecond, 90)), cut2; got != want {
		t.Fatalf("still timing out a second later: limit %d, want %d", got, want)
	}
	feed(c, 100, 500*time.Millisecond, 1) // 1%: not a cut
	clk.advance(100 * time.Millisecond)
	before := c.limit
	c.adjust(steady(200, &granted, 100*time.Millisecond, 50))
	if c.limit < before {
		t.Fatalf("1%% timeouts cut the limit from %v to %v", before, c.limit)
	}
	// Clean seconds: back to what the rate needs.
	for range 30 {
		feed(c, 20, 500*time.Millisecond, 0)
		clk.advance(time.Second)
		limit = c.adjust(steady(200, &granted, time.Second, 60))
	}
	if limit != 127 {
		t.Errorf("30 s after the timeouts stopped: limit %d, want 127 again", limit)
	}
	// A provider failing a tenth of its requests for good: the limit
	// shrinks, but not below a quarter of what the rate needs.
	for range 60 {
		feed(c, 20, 500*time.Millisecond, 2)
		clk.advance(time.Second)
		limit = c.adjust(steady(200, &granted, time.Second, 60))
	}
	if floor := int(start * cutFloor); limit != floor {
		t.Errorf("after a minute of 10%% timeouts: limit %d, want the floor %d", limit, floor)
	}
	for range 30 { // 2%: under the threshold, it climbs back
		feed(c, 100, 500*time.Millisecond, 2)
		clk.advance(time.Second)
		limit = c.adjust(steady(200, &granted, time.Second, 60))
	}
	if limit != 127 {
		t.Errorf("30 s of 2%% timeouts after that: limit %d, want 127 again", limit)
	}
}

// --workers N fixes the limit; --max-in-flight caps the automatic one.
func TestConcurrencyFixedAndCapped(t *testing.T) {
	clk := newTestClock()
	fixed := newConcurrency(8, 256, 100, clk.now)
	capped := newConcurrency(0, 8, 100, clk.now)
	var granted int64
	for range 20 {
		feed(fixed, 10, 300*time.Millisecond, 5)
		feed(capped, 10, 300*time.Millisecond, 0)
		clk.advance(200 * time.Millisecond)
		s := sample{rate: 100, granted: granted, slotWaiters: 50, peakOut: 8}
		if got := fixed.adjust(s); got != 8 {
			t.Fatalf("--workers 8: limit %d", got)
		}
		if got := capped.adjust(s); got != 8 {
			t.Fatalf("--max-in-flight 8: limit %d, want the cap", got)
		}
	}
	// No rate limit: no Little's law; it starts at 8 and grows while
	// requests wait for a slot.
	u := newConcurrency(0, 64, 0, clk.now)
	if got := int(u.limit); got != inFlightStart {
		t.Fatalf("no rate: first limit %d, want %d", got, inFlightStart)
	}
	clk.advance(100 * time.Millisecond)
	if got := u.adjust(sample{slotWaiters: 3}); got != int(inFlightStart*growFactor+1) {
		t.Errorf("no rate, requests waiting: limit %d, want %d", got, int(inFlightStart*growFactor+1))
	}
}

// The gate holds at most limit slots, serves waiters in order, moves its
// limit while they wait, and a waiter that gives up takes no slot.
func TestGate(t *testing.T) {
	g := newGate(2)
	ctx := context.Background()
	for range 2 {
		if err := g.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan int, 3)
	for i := range 3 {
		go func() {
			if g.acquire(ctx) == nil {
				got <- i
			}
		}()
		for w, _, _ := g.peek(); w != i+1; w, _, _ = g.peek() {
			time.Sleep(time.Millisecond)
		}
	}
	g.release()
	if i := <-got; i != 0 {
		t.Errorf("first waiter served: %d, want 0", i)
	}
	g.setLimit(4) // two more slots: both remaining waiters go
	if a, b := <-got, <-got; a+b != 3 {
		t.Errorf("served %d and %d, want 1 and 2", a, b)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := g.acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a full gate: acquire = %v, want the deadline", err)
	}
	if w, blocked, _ := g.peek(); w != 0 || blocked != 4 {
		t.Errorf("after a waiter gave up: %d waiting, %d ever blocked; want 0 and 4", w, blocked)
	}
	for range 4 {
		g.release()
	}
	if _, _, limit := g.counts(); limit != 4 {
		t.Errorf("limit %d, want 4", limit)
	}
	if g.held != 0 {
		t.Errorf("%d slots held after every release, want 0", g.held)
	}
}
