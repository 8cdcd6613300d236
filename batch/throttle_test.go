package batch

import (
	"math/rand/v2"
	"testing"
	"time"
)

// provider decides whether a request arriving at t is answered 429.
type provider func(t time.Time) (throttled bool)

// slidingLimit is a provider that lets through n requests in any second,
// as the sandbox's --limit-rps does.
func slidingLimit(n int) provider {
	var ring []time.Time
	return func(t time.Time) bool {
		if len(ring) == n && t.Sub(ring[0]) < time.Second {
			return true
		}
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, t)
		return false
	}
}

// simResult is what a simulated run saw, second by second.
type simResult struct {
	sent, throttled []int     // per second
	rate            []float64 // the policy's rate at each second's end
	minRate         float64
}

// simulate runs the 429 policy for d against p: requests go out evenly at
// the policy's rate (the configured one at first), each answered lat
// later. Throttled requests are retried as new requests would be: they take
// their own share of the rate.
func simulate(base float64, p provider, d, lat time.Duration) simResult {
	clk := newTestClock()
	start := clk.now()
	th := newThrottle(base, clk.now)
	type answer struct {
		at        time.Time
		throttled bool
	}
	var pending []answer
	rate, credit := base, 0.0
	secs := int(d / time.Second)
	r := simResult{sent: make([]int, secs), throttled: make([]int, secs), rate: make([]float64, secs), minRate: base}
	const tick = time.Millisecond
	for now := start; now.Before(start.Add(d)); now = now.Add(tick) {
		clk.t = now
		for len(pending) > 0 && !pending[0].at.After(now) {
			got, _ := th.observe(pending[0].throttled, lat)
			rate = got
			if rate == 0 {
				rate = base
			}
			r.minRate = min(r.minRate, rate)
			pending = pending[1:]
		}
		credit += rate * tick.Seconds()
		sec := int(now.Sub(start) / time.Second)
		for ; credit >= 1; credit-- {
			t := p(now)
			r.sent[sec]++
			if t {
				r.throttled[sec]++
			}
			pending = append(pending, answer{now.Add(lat), t})
		}
		r.rate[sec] = rate
	}
	return r
}

func (r simResult) between(from, to int) (sent, throttled int) {
	for s := from; s < to; s++ {
		sent += r.sent[s]
		throttled += r.throttled[s]
	}
	return sent, throttled
}

// A provider throttling above 150/s under --rate 200: about 150 are taken
// each second, 429s stay a small share, and the rate never collapses.
func TestThrottleFollowsAProviderLimit(t *testing.T) {
	r := simulate(200, slidingLimit(150), 90*time.Second, 300*time.Millisecond)
	sent, th := r.between(10, 90)
	accepted := float64(sent-th) / 80
	if accepted < 140 || accepted > 150 {
		t.Errorf("accepted %.1f/s from 10 s on, want 140-150 (the provider takes 150)", accepted)
	}
	if share := float64(th) / float64(sent); share > 0.06 {
		t.Errorf("429s were %.1f%% of the requests from 10 s on, want a small share (≤ 6%%)", 100*share)
	}
	if r.minRate < 130 {
		t.Errorf("the rate fell to %.1f/s, want no lower than about 130 against a 150/s provider", r.minRate)
	}
	t.Logf("from 10 s on: %.1f/s accepted, 429s %.1f%%; lowest rate %.1f/s", accepted, 100*float64(th)/float64(sent), r.minRate)
	if r.rate[0] != 200 || r.rate[3] >= 200 {
		t.Errorf("rates %v..., want 200 then lowered within 3 s", r.rate[:4])
	}
}

// 2% of answers 429 at random: the rate is never lowered; the 429s cost
// their own share and no more. Low rates too, where a second holds few
// answers and three 429s in 20 or 50 of them happen by chance: with 3 as
// the least count of a throttle, 2% lowered 20/s and 50/s runs.
func TestThrottleIgnoresScattered429s(t *testing.T) {
	for _, base := range []float64{10, 20, 50, 200} {
		for _, share := range []float64{0.01, 0.02} {
			for seed := range uint64(4) {
				rng := rand.New(rand.NewPCG(13, 13+seed))
				random := func(time.Time) bool { return rng.Float64() < share }
				r := simulate(base, random, 180*time.Second, 300*time.Millisecond)
				if r.minRate != base {
					t.Errorf("--rate %.0f, %.0f%% random 429s (seed %d) lowered the rate to %.1f/s", base, 100*share, seed, r.minRate)
				}
				sent, th := r.between(0, 180)
				if got := float64(sent-th) / 180; got < base*(1-share)-2 {
					t.Errorf("--rate %.0f, %.0f%% random 429s: %.1f/s accepted, want about %.0f", base, 100*share, got, base*(1-share))
				}
			}
		}
	}
}

// At a low rate a provider's throttle is still followed: 50/s against one
// taking 30/s answers 20 429s a second, and 10/s against one taking 5/s
// five of ten, half of the answers.
func TestThrottleFollowsALowLimit(t *testing.T) {
	// At 5/s a probe of +1/s is a fifth more, under throttleFew 429s a
	// second: with one-second windows 429s stayed a quarter of the
	// requests (24%); a window waits for throttleAnswers now (14%). A
	// tenth at 30/s.
	// And limits a little under --rate, where 429s are a few a second
	// (a money-safety review found these never followed with a least
	// count of 8). A limit within about 7% of --rate (93 under 100) is
	// not told from chance: its 429s stay at that share.
	for _, tc := range []struct{ base, limit, share float64 }{{50, 30, 0.1}, {10, 5, 0.2},
		{30, 25, 0.1}, {40, 34, 0.1}} {
		r := simulate(tc.base, slidingLimit(int(tc.limit)), 60*time.Second, 300*time.Millisecond)
		sent, th := r.between(10, 60)
		if accepted := float64(sent-th) / 50; accepted < 0.9*tc.limit || accepted > tc.limit {
			t.Errorf("--rate %.0f: accepted %.1f/s from 10 s on, want about %.0f (what the provider takes)", tc.base, accepted, tc.limit)
		}
		if share := float64(th) / float64(sent); share > tc.share || r.minRate >= tc.base {
			t.Errorf("--rate %.0f: 429s were %.1f%% of the requests from 10 s on, lowest rate %.1f/s: want the rate lowered toward what the provider takes",
				tc.base, 100*share, r.minRate)
		}
	}
}

// A pause in the answers (every request waiting out a Retry-After) within
// a window is not time the provider took nothing in: the rate is cut to
// what it takes (5/s), not to what it took over the pause (3.3/s after 3
// s, when the pause counted whole).
func TestThrottleLeavesAGapOutOfTheRate(t *testing.T) {
	for _, gap := range []time.Duration{0, 3 * time.Second, 4500 * time.Millisecond} {
		clk := newTestClock()
		th := newThrottle(10, clk.now)
		provider := slidingLimit(5)
		answer := func() (float64, bool) {
			clk.advance(100 * time.Millisecond)
			return th.observe(provider(clk.now()), 100*time.Millisecond)
		}
		rate, changed := 0.0, false
		for i := 0; i < 15 && !changed; i++ {
			rate, changed = answer()
		}
		clk.advance(gap)
		for i := 0; i < 200 && !changed; i++ {
			rate, changed = answer()
		}
		if !changed || rate < 4.5 || rate > 5.25 {
			t.Errorf("answers stopping for %v: rate %.2f/s (changed %v), want cut to about 5/s, what the provider takes", gap, rate, changed)
		}
	}
}

// The same right after a cut, while the 429'd requests wait out their
// Retry-After: the pause counts for a second there too. A provider that
// then still answers 3 of every 5 requests 429 (4/s of 10 taken over the
// 3 s of answers) is cut to 0.97 x 12 / (2.9 s + 1 s), 2.98/s; counting
// the whole pause made it 1.94.
func TestThrottleLeavesAGapAfterACutOutOfTheRate(t *testing.T) {
	clk := newTestClock()
	th := newThrottle(10, clk.now)
	provider := slidingLimit(5)
	answer := func(throttled bool) (float64, bool) {
		clk.advance(100 * time.Millisecond)
		return th.observe(throttled, 100*time.Millisecond)
	}
	changed := false
	for i := 0; i < 200 && !changed; i++ {
		_, changed = answer(provider(clk.now().Add(100 * time.Millisecond)))
	}
	if !changed {
		t.Fatal("no cut against a provider taking half the rate")
	}
	clk.t = th.holdUntil.Add(3 * time.Second) // no answers for the hold and 3 s after
	rate := 0.0
	changed = false
	for i := 0; i < 30 && !changed; i++ {
		rate, changed = answer(i%5 < 3)
	}
	if !changed || rate < 2.9 || rate > 3.1 {
		t.Errorf("after a pause following the hold: rate %.2f/s (changed %v), want 2.98/s", rate, changed)
	}
}

// A single 429, or a few, never lowers the rate.
func TestThrottleOne429IsNotAThrottle(t *testing.T) {
	clk := newTestClock()
	th := newThrottle(200, clk.now)
	for i := range 2000 {
		clk.advance(5 * time.Millisecond)
		if rate, changed := th.observe(i%400 == 7, 300*time.Millisecond); changed || rate != 200 {
			t.Fatalf("answer %d: rate %v (changed %v), want 200 unchanged", i, rate, changed)
		}
	}
}

// A throttle that lifts: the rate climbs back to the configured one
// within seconds. Even a provider answering nothing but 429 for a while
// leaves the rate at 1/s at worst, and it is back within a minute.
func TestThrottleClimbsBackWhenThe429sStop(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  int
		within int // seconds after the throttle lifts
	}{{"throttled at 50/s", 50, 25}, {"429 to everything", 0, 60}} {
		limited := slidingLimit(max(tc.limit, 1))
		lifted := false
		p := func(at time.Time) bool {
			if lifted {
				return false
			}
			if tc.limit == 0 {
				return true
			}
			return limited(at)
		}
		r := simulateSwitch(200, p, 20*time.Second, 100*time.Second, 300*time.Millisecond, func() { lifted = true })
		if r.minRate < throttleFloor {
			t.Errorf("%s: rate fell to %.2f/s, below the floor", tc.name, r.minRate)
		}
		back := -1
		for s := 20; s < len(r.rate); s++ {
			if r.rate[s] == 200 {
				back = s - 20
				break
			}
		}
		t.Logf("%s: lowest rate %.1f/s, back to 200/s %d s after the throttle lifted", tc.name, r.minRate, back)
		if back < 0 || back > tc.within {
			t.Errorf("%s: back to 200/s %d s after the throttle lifted, want within %d s (rates from then: %v)", tc.name, back, tc.within, r.rate[20:min(len(r.rate), 40)])
		}
	}
}

// simulateSwitch is simulate with lift called once, after liftAfter.
func simulateSwitch(base float64, p provider, liftAfter, d, lat time.Duration, lift func()) simResult {
	var startAt time.Time
	done := false
	return simulate(base, func(t time.Time) bool {
		if startAt.IsZero() {
			startAt = t
		}
		if !done && t.Sub(startAt) >= liftAfter {
			done = true
			lift()
		}
		return p(t)
	}, d, lat)
}
