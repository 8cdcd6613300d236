package batch

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// RetryReason says why a request got no decision and may be tried again.
// Only these two: every other answer is an outcome (SPEC section 2, rule 5).
type RetryReason string

const (
	// RetryNotSent is a request that provably never reached the provider
	// (no connection, DNS, a refused dial).
	RetryNotSent RetryReason = "not-sent"
	// RetryThrottled is a request the provider answered HTTP 429: it was
	// not processed, and Retry-After says when to ask again.
	RetryThrottled RetryReason = "throttled"
)

// Retry describes a request that got no decision, for a RetryPolicy.
type Retry struct {
	Why        RetryReason
	Tries      int           // requests made so far for this reason, from 1
	RetryAfter time.Duration // the provider's Retry-After (RetryThrottled); 0 when none
	First      time.Time     // when the first of those requests went out
}

// RetryPolicy decides whether, and when, a request that got no decision is
// tried again. The send loop and the enquiry loop consult the same one.
type RetryPolicy interface {
	// Next returns when r's request may go again, or false to give up on
	// it for this run (the row then waits for the next run, untouched).
	Next(r Retry) (at time.Time, ok bool)
}

// Backoff is the default RetryPolicy. A request that never left waits with
// exponential backoff and full jitter (try n: a uniform random time in
// [0, min(Max, Base·2^(n-1))]), so workers retrying at once spread out; it
// is given up after MaxTries. A 429 waits the provider's Retry-After (a
// capped exponential backoff when it sent none) and is given up after
// MaxThrottled tries: the rate limiter, not this wait, keeps the retries
// within the rate, so no jitter is added.
type Backoff struct {
	Base, Max    time.Duration
	MaxTries     int              // tries of a request that never left; 5 when 0
	MaxThrottled int              // tries of a request answered 429; 20 when 0
	Now          func() time.Time // nil means time.Now
	Rand         func() float64   // nil means math/rand/v2
}

// Next implements RetryPolicy.
func (b Backoff) Next(r Retry) (time.Time, bool) {
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	switch r.Why {
	case RetryThrottled:
		if r.Tries >= orDefault(b.MaxThrottled, 20) {
			return time.Time{}, false
		}
		wait := r.RetryAfter
		if wait <= 0 {
			wait = b.ceiling(r.Tries)
		}
		return now().Add(wait), true
	default:
		if r.Tries >= orDefault(b.MaxTries, 5) {
			return time.Time{}, false
		}
		rnd := b.Rand
		if rnd == nil {
			rnd = rand.Float64
		}
		return now().Add(time.Duration(rnd() * float64(b.ceiling(r.Tries)))), true
	}
}

// ceiling is the backoff bound of try n: Base·2^(n-1), at most Max.
func (b Backoff) ceiling(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// gaveUp says, for the row's message, why a request that got no decision
// was not tried again; last is the client's account of the last try, why
// what ended the retries (retryWait's "interrupted", "stopped", ...).
func gaveUp(r Retry, last string, now time.Time, why string) string {
	var what string
	switch r.Why {
	case RetryThrottled:
		what = "the provider answered 429 (throttled)"
		if r.Tries > 1 {
			what = fmt.Sprintf("the provider answered 429 (throttled) to %d tries over %s", r.Tries, now.Sub(r.First).Round(time.Second))
		}
	default:
		what = last
		if what == "" {
			what = "no connection"
		}
		what = strings.TrimSpace(strings.TrimPrefix(what, "not sent:"))
		if r.Tries > 1 {
			what = fmt.Sprintf("%s (%d tries)", what, r.Tries)
		}
	}
	switch why {
	case "interrupted":
		return "interrupted while waiting to retry; " + what
	case "stopped":
		return "the run stopped before the retry; " + what
	}
	return what
}
