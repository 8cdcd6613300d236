package batch

import (
	"math"
	"sync"
	"time"
)

// The 429 policy. A 429 is never a row's outcome: its request waits the
// provider's Retry-After and goes again (RetryPolicy). The send rate is
// lowered only when 429s persist: more than throttleShare of the answers,
// and more than 2% of 429s would give by chance (see observe), two windows
// in a row, or twice that share in one. A window is a second, or while
// 429s come at a low rate, long enough for throttleAnswers answers. A
// fixed least count does not fit every rate: with 3, chance 429s at 2%
// lowered 20/s and 50/s runs within minutes; with 8, a provider taking
// 25/s under --rate 30 (5 429s a second) was never followed. A provider
// throttling above N requests/s then answers 429 to about (rate-N)/rate
// of them, and the rate is set to what it accepted in that window, a
// little under N. Scattered 429s (1-2% of answers) almost never reach the
// threshold and cost only their own retries. Each window without a cut
// the rate climbs back (by 10%, or 2% while some 429s still come) to the
// configured one, so a throttle that lifts is followed up and a rate just
// under the provider's is probed from time to time. The rate never falls
// below throttleFloor: no collapse to a crawl held for minutes.
const (
	throttleWindow = time.Second
	// A window with 429s lasts until it holds throttleAnswers answers,
	// up to throttleLongest: at a low rate a second holds too few to tell
	// a throttle from chance, and under throttleFew 429s a second went on
	// for ever (a provider taking 5/s was sent 6.6/s, a third of it 429s).
	throttleAnswers = 30
	throttleLongest = 10 * time.Second
	throttlePause   = 5 * time.Second // without an answer: the window is void
	throttleShare   = 0.05
	throttleFew     = 3    // 429s in a window, at least, for a throttle
	throttleChance  = 0.02 // the share of 429s that comes by chance
	throttleUnder   = 0.97 // of the accepted rate, after a cut
	throttleFloor   = 1.0  // requests per second
	climbClean      = 1.10 // a window without 429s
	climbSome       = 1.02 // a window with a few, or near the rate last cut at
	forgetAfter     = 3    // clean windows before that rate is forgotten
)

// throttle tracks 429s and decides the send rate. Its clock is injected.
type throttle struct {
	mu   sync.Mutex
	now  func() time.Time
	base float64 // configured rate; 0 = none
	rate float64 // current; equal to base unless lowered

	start       time.Time     // of the window
	last        time.Time     // the window's last answer
	idle        time.Duration // in the window, gaps between answers (see observe)
	holdUntil   time.Time     // answers before it reply to the rate before the last cut
	answers, th int           // in the window
	total       int64         // 429s in the run
	lowest      float64       // lowest rate set; 0 = never lowered
	plateau     float64       // what the provider accepted at the last cut; 0 = forgotten
	clean       int           // windows in a row above the plateau without a 429
	over        bool          // the last window was over throttleShare
}

func newThrottle(base float64, now func() time.Time) *throttle {
	return &throttle{now: now, base: base, rate: base}
}

// observe takes one answer from the provider (429 or not) and the latency
// it came after, and returns the send rate (0 = no limit) and whether it
// changed.
func (t *throttle) observe(throttled bool, lat time.Duration) (rate float64, changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if throttled {
		t.total++
	}
	now := t.now()
	if now.Before(t.holdUntil) {
		return t.rate, false
	}
	// Gaps are measured within the window: after a cut it starts at the
	// hold's end, later than the last answer.
	switch gap := now.Sub(maxTime(t.last, t.start)); {
	case t.start.IsZero() || now.Sub(t.last) > throttlePause:
		// A pause (nothing to send, the ledger busy): the window says
		// nothing about the provider's rate.
		t.start, t.answers, t.th, t.idle = now, 0, 0, 0
	case gap > throttleWindow:
		// A shorter one (every request waiting out a Retry-After) counts
		// for a second, in which a provider's window refills: counted
		// whole, it made what the provider takes look up to half lower.
		t.idle += gap - throttleWindow
	}
	t.last = now
	t.answers++
	if throttled {
		t.th++
	}
	dt := now.Sub(t.start)
	active := dt - t.idle
	if active < throttleWindow || t.th > 0 && t.answers < throttleAnswers && dt < throttleLongest {
		return t.rate, false
	}
	old := t.rate
	accepted := float64(t.answers-t.th) / active.Seconds()
	switch {
	case t.th > 0:
		t.clean = 0
	case t.plateau > 0 && t.rate > t.plateau*(1+throttleShare):
		t.clean++ // clearly above what the provider took, and no 429
	}

	share := float64(t.th) / float64(t.answers)
	// Over: more than throttleShare of the answers, and more 429s than
	// chance gives at throttleChance (scattered 429s must cost only their
	// share): its mean plus 3.5 standard deviations, two windows running,
	// or plus 6 in one window over twice the share. By the binomial tail,
	// 2% of chance 429s then lower the rate (for seconds) in at most about
	// 4% of 8-hour nights at any rate from 10/s; with 2.5 and 4, in 17-92%.
	chance := throttleChance * float64(t.answers)
	th := float64(t.th)
	over := t.th >= throttleFew && share > throttleShare && th > chance+3.5*math.Sqrt(chance)+1
	persist := over && t.over || share > 2*throttleShare && th > chance+6*math.Sqrt(chance)+2
	t.over = over
	switch {
	case t.over && !persist:
		// Over the threshold once: hold the rate and see whether it lasts.
	case persist:
		t.over = false
		next := max(throttleFloor, accepted*throttleUnder)
		if t.base > 0 {
			next = min(next, t.base)
		}
		if t.rate > 0 {
			next = min(next, t.rate)
		}
		if t.base > 0 && t.base < throttleFloor {
			next = t.base
		}
		t.rate = next
		t.plateau, t.clean = accepted, 0
		if t.lowest == 0 || next < t.lowest {
			t.lowest = next
		}
		// Answers to requests sent before the cut still reflect the old
		// rate, and the provider's own window still holds them for a
		// second: judge none of them.
		t.holdUntil = now.Add(throttleWindow + lat)
	case t.rate != t.base:
		// Back to the rate the provider last took at once, then probe
		// above it gently while 429s still come or it was found lately;
		// after a few clean windows it is forgotten: the throttle lifted.
		next := t.rate*climbClean + 1
		switch {
		case t.plateau > 0 && t.rate < t.plateau:
			next = min(next, t.plateau)
		case t.th > 0 || t.plateau > 0 && t.clean < forgetAfter:
			next = t.rate*climbSome + 1
		default:
			t.plateau = 0
		}
		switch {
		case t.base > 0 && next >= t.base:
			next = t.base
		case t.base <= 0 && next > 2*accepted+10:
			next = 0 // the lowered rate no longer binds: no limit again
		}
		t.rate = next
	}
	t.start, t.answers, t.th, t.idle = now, 0, 0, 0
	if now.Before(t.holdUntil) {
		t.start = t.holdUntil
	}
	return t.rate, t.rate != old
}

// accepted is what the provider took, requests/s, in the window that last
// lowered the rate; 0 when none did lately.
func (t *throttle) accepted() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.plateau
}

// state returns the 429s answered in the run and the lowest rate set (0
// if never lowered).
func (t *throttle) state() (throttled int64, lowest float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.lowest
}
