package batch

import (
	"context"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestBreakerTripsOnlyWhenMostRecentFail(t *testing.T) {
	b := newBreaker(10, 0.8)
	for i := 0; i < 7; i++ {
		if b.observe(true) {
			t.Fatalf("tripped after %d failures with the window not full", i+1)
		}
	}
	for i := 0; i < 3; i++ {
		if b.observe(false) {
			t.Fatal("tripped with 7 of 10 failing, below 0.8")
		}
	}
	// Failures replace the oldest failures first; the 8th new one pushes
	// the first success out: 8 of the last 10 failing.
	for i := 0; i < 7; i++ {
		if b.observe(true) {
			t.Fatalf("tripped early, at new failure %d", i+1)
		}
	}
	if !b.observe(true) {
		t.Error("did not trip with 8 of the last 10 failing")
	}
}

// knownRefs trips on the 8th first send of the last 16 answered 18, full
// window or not; 18s that slid out of the window no longer count.
func TestKnownRefsTripsWhenHalfTheRecentFirstSendsWereKnown(t *testing.T) {
	k := newKnownRefs(16, 8)
	for i := range 7 {
		if k.observe(true) {
			t.Fatalf("tripped at the %d-th 18, want the 8th", i+1)
		}
	}
	if !k.observe(true) {
		t.Fatal("8 first sends answered 18 in a row did not trip")
	}

	k = newKnownRefs(16, 8)
	for range 7 {
		k.observe(true)
	}
	for i := range 16 {
		if k.observe(false) {
			t.Fatalf("tripped on fresh answer %d", i+1)
		}
	}
	// The first seven 18s are out of the window: seven more do not trip.
	for i := range 7 {
		if k.observe(true) {
			t.Fatalf("tripped at new 18 number %d with the old ones out of the window", i+1)
		}
	}
	if known, filled := k.state(); known != 7 || filled != 16 {
		t.Errorf("state: %d known of %d, want 7 of 16", known, filled)
	}

	// One in two answered 18: the 8th within 16 trips.
	k = newKnownRefs(16, 8)
	for i := range 15 {
		if k.observe(i%2 == 0) != (i == 14) {
			t.Fatalf("answer %d: tripped %v, want only at the 8th 18 (answer 15)", i+1, i != 14)
		}
	}
}

func TestLimiterWindowNeverHoldsMoreThanRatePlusBurst(t *testing.T) {
	const perSecond, burst, workers = 40, 4, 8
	l := newLimiter(perSecond, burst, time.Now)
	// Fill the window as a stall would leave it: rate+burst sends just now.
	// The token bucket alone would let the next ones through at once.
	start := time.Now()
	for i := range l.win {
		l.win[i] = start
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var sent []time.Time
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := l.Wait(ctx); err != nil {
					return
				}
				mu.Lock()
				sent = append(sent, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, s := range sent {
		if s.Sub(start) < time.Second-5*time.Millisecond {
			t.Fatalf("a send %v after a full window, want none before 1s", s.Sub(start))
		}
	}
	if len(sent) == 0 {
		t.Fatal("nothing was sent after the window cleared")
	}
	if u := newLimiter(0, 1, time.Now); u.win != nil {
		t.Error("an unlimited limiter keeps a window")
	}
}

// A request counts in the window from its answer when that comes soon
// (it reached the provider before), and never more than maxArrivalDelay
// after its send, so a slow provider does not slow the rate.
func TestLimiterCountsAnsweredRequestsFromTheirAnswer(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start
	l := newLimiter(3, 1, func() time.Time { return now })
	l.lim.SetLimit(rate.Inf) // the window alone is under test
	if len(l.win) != 4 {
		t.Fatalf("window of %d, want rate+burst = 4", len(l.win))
	}
	ctx := context.Background()
	var tks []ticket
	for range 4 {
		tk, err := l.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tks = append(tks, tk)
	}
	now = start.Add(4 * time.Millisecond)
	l.done(tks[0], time.Time{}) // answered 4 ms after it went: it arrived by then
	now = start.Add(204 * time.Millisecond)
	l.done(tks[2], time.Time{}) // answered 204 ms after it went, not known written: counts from maxArrivalDelay
	if want := start.Add(maxArrivalDelay); !l.win[tks[2].slot].Equal(want) {
		t.Errorf("a slow answer's slot at %v, want %v (the send plus maxArrivalDelay)", l.win[tks[2].slot], want)
	}
	// Written out 100 ms after it was let through (a busy process) and
	// answered 104 ms later: it counts from maxArrivalDelay after the write.
	l.done(tks[3], start.Add(100*time.Millisecond))
	if want := start.Add(100*time.Millisecond + maxArrivalDelay); !l.win[tks[3].slot].Equal(want) {
		t.Errorf("a late write's slot at %v, want %v (the write plus maxArrivalDelay)", l.win[tks[3].slot], want)
	}
	now = start.Add(time.Second + 2*time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(short); err == nil {
		t.Fatal("a fifth request went 1.002 s after the first was sent, 0.998 s after its answer")
	}
	now = start.Add(time.Second + 4*time.Millisecond + time.Microsecond)
	tk, err := l.Wait(ctx)
	if err != nil {
		t.Fatalf("a second after the answer: %v", err)
	}
	// The first request's slot now belongs to the fifth; a late done for
	// the first must not move it.
	before := l.win[tk.slot]
	now = now.Add(time.Millisecond)
	l.done(tks[0], time.Time{})
	if l.win[tk.slot] != before {
		t.Error("done of a reused slot's old ticket moved the new request's time")
	}
	l.done(tk, time.Time{})
	if !l.win[tk.slot].Equal(now) {
		t.Errorf("done: slot time %v, want %v", l.win[tk.slot], now)
	}
}
