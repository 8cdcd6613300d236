package batch

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// latencies is a histogram of answer latencies in buckets about 4% wide,
// from a microsecond to ten minutes: percentiles to within that, in fixed
// memory, without a lock.
type latencies struct {
	buckets [latencyBuckets]atomic.Int64
	n       atomic.Int64
}

const (
	latencyPerE    = 25 // buckets per factor e: each e^(1/25), 4% wider than the last
	latencyBuckets = 512
)

func (h *latencies) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = min(int(math.Log(us)*latencyPerE), latencyBuckets-1)
	}
	h.buckets[i].Add(1)
	h.n.Add(1)
}

// quantile returns the latency below which q of the answers came (the
// middle of its bucket), or 0 with none.
func (h *latencies) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= max(rank, 1) {
			us := math.Exp((float64(i) + 0.5) / latencyPerE)
			return time.Duration(us * float64(time.Microsecond))
		}
	}
	return 0
}

// rateWatch tells when the achieved rate has stayed below the configured
// one for long enough to say why, once. It looks at the requests let
// through over the last rateRecent (after at least rateJudge of them), and
// only while rows are waiting to be sent: a run's tail, with nothing left
// to send, is not a shortfall.
type rateWatch struct {
	target  float64
	after   time.Duration // below this long before the warning
	samples []rateSample
	since   time.Time // below since; zero when not below
	sinceN  int64
	warned  bool
}

type rateSample struct {
	at time.Time
	n  int64
}

const (
	rateRecent = 10 * time.Second // the achieved rate is judged over this
	rateJudge  = 5 * time.Second  // and not before this much is seen
	rateBelow  = 0.9              // below this share of --rate is short
)

// rateWarnLate is how long the rate stays short before the WARN; a
// variable so a test need not wait 30 s.
var rateWarnLate = 30 * time.Second

func newRateWatch(target float64) *rateWatch {
	return &rateWatch{target: target, after: rateWarnLate}
}

// check takes the count of requests let through so far at now; waiting
// says rows are waiting to be sent. It returns true once, when the recent
// rate has been short at every check for w.after, with the rate achieved
// over that time.
func (w *rateWatch) check(now time.Time, n int64, waiting bool) (achieved float64, warn bool) {
	if w.target <= 0 || w.warned {
		return 0, false
	}
	if !waiting {
		w.samples, w.since = w.samples[:0], time.Time{}
		return 0, false
	}
	w.samples = append(w.samples, rateSample{now, n})
	for len(w.samples) > 2 && now.Sub(w.samples[1].at) >= rateRecent {
		w.samples = w.samples[1:]
	}
	first := w.samples[0]
	span := now.Sub(first.at)
	if span < rateJudge {
		return 0, false
	}
	recent := float64(n-first.n) / span.Seconds()
	if recent >= rateBelow*w.target {
		w.since = time.Time{}
		return 0, false
	}
	if w.since.IsZero() {
		w.since, w.sinceN = now, n
	}
	if d := now.Sub(w.since); d >= w.after {
		w.warned = true
		return float64(n-w.sinceN) / d.Seconds(), true
	}
	return 0, false
}

// Shortfall is what the engine knows when the rate falls short: the
// figures of the WARN line.
type Shortfall struct {
	Configured, Achieved float64
	For                  time.Duration
	P50, P99             time.Duration
	InFlight             int           // requests out now
	Limit, Cap           int           // in-flight limit now, and its cap
	Fixed                bool          // --workers N
	Blocked              bool          // requests waited for a slot lately
	Rate                 float64       // send rate now (lowered by 429s)
	Accepted             float64       // requests/s the provider took at the rate's last cut; 0 = none
	Answers, Throttled   int64         // since the run began
	Overloads            int64         // timeouts and 5xx since the run began
	Timeouts             int64         // of them, no answer within Timeout
	Timeout              time.Duration // --timeout
	BreakerBad, Breaker  int           // transient failures in the breaker's window, and its size
	BreakerRatio         float64
}

// Diagnose says what holds the run back and what to change.
func (s Shortfall) Diagnose() (limitedBy, hint string) {
	share := func(n int64) float64 {
		if s.Answers == 0 {
			return 0
		}
		return float64(n) / float64(s.Answers)
	}
	need := int(math.Ceil(s.Configured*s.P50.Seconds()*inFlightHeadroom)) + inFlightSpare
	switch {
	case s.Rate > 0 && s.Rate < 0.95*s.Configured || share(s.Throttled) >= throttleShare:
		// What it takes, not what was sent: the requests answered 429
		// count in the achieved rate, and --rate at that draws 429s still.
		takes := s.Accepted
		if takes <= 0 {
			takes = s.Achieved * (1 - share(s.Throttled))
		}
		return fmt.Sprintf("the provider's throttle (HTTP 429 on %.1f%% of requests)", 100*share(s.Throttled)),
			fmt.Sprintf("the provider takes about %.0f requests/s: lower --rate to that, or ask it to raise the account's limit", takes)
	case share(s.Timeouts) >= overloadShare:
		// Before the cap: requests that wait out --timeout hold their
		// slots, so the cap is met, but more of them would time out too.
		return fmt.Sprintf("requests timing out at --timeout %s (%.1f%% of requests; latency p99 %s)", s.Timeout, 100*share(s.Timeouts), roundLatency(s.P99)),
			"each one timed out is a row of unknown outcome, asked about later: if the provider is slow rather than failing, raise --timeout above its latency; else check the provider's status"
	case s.Limit >= s.Cap && s.Fixed:
		return fmt.Sprintf("--workers %d", s.Cap),
			fmt.Sprintf("at a latency of %s, %d requests at once carry about %.0f/s: omit --workers (automatic) or raise it to about %d",
				roundLatency(s.P50), s.Cap, float64(s.Cap)/max(s.P50.Seconds(), 1e-3), need)
	case s.Limit >= s.Cap:
		return fmt.Sprintf("--max-in-flight %d", s.Cap),
			fmt.Sprintf("at a latency of %s, %d requests at once carry about %.0f/s: raise --max-in-flight to about %d, or accept the rate",
				roundLatency(s.P50), s.Cap, float64(s.Cap)/max(s.P50.Seconds(), 1e-3), need)
	case share(s.Overloads) >= overloadShare:
		return fmt.Sprintf("the provider's timeouts and 5xx answers (%.1f%% of requests)", 100*share(s.Overloads)),
			fmt.Sprintf("requests at once were lowered to %d to spare it; check the provider's status", s.Limit)
	case s.Blocked:
		return "the in-flight limit, still growing", "nothing to change if this passes; else report it"
	}
	return "aopbatch itself: requests waited for rows, not for the provider",
		"check the machine's load and the ledger's disk (--synchronous NORMAL writes less)"
}

// Args renders the shortfall as the WARN line's attributes.
func (s Shortfall) Args() []any {
	by, hint := s.Diagnose()
	th := 0.0
	if s.Answers > 0 {
		th = 100 * float64(s.Throttled) / float64(s.Answers)
	}
	return []any{
		"configured", fmt.Sprintf("%g/s", s.Configured),
		"achieved", fmt.Sprintf("%.1f/s", s.Achieved),
		"for", s.For.Round(time.Second).String(),
		"latency_p50", roundLatency(s.P50).String(),
		"latency_p99", roundLatency(s.P99).String(),
		"in_flight", s.InFlight,
		"in_flight_limit", s.Limit,
		"in_flight_cap", s.Cap,
		"throttled_429", fmt.Sprintf("%.1f%%", th),
		"breaker", fmt.Sprintf("%d of the last %d requests failed transiently (trips at %.0f%%)", s.BreakerBad, s.Breaker, 100*s.BreakerRatio),
		"limited_by", by,
		"hint", hint,
	}
}

// roundLatency keeps two or three significant figures.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

// RunStats is what a run measured of the provider and of itself, for the
// run summary.
type RunStats struct {
	ConfiguredRate float64       // --rate; 0 = no limit
	AchievedRate   float64       // requests per second, up to the last one let through (not its answer)
	SendPhase      time.Duration // from the first request let through to the end of sending
	Recharges      int64         // recharge requests
	Enquiries      int64         // status enquiries
	Throttled      int64         // HTTP 429 answers
	LowestRate     float64       // lowest send rate the 429s led to; 0 = never lowered
	LatencyP50     time.Duration // of every answer
	LatencyP90     time.Duration
	LatencyP99     time.Duration
	PeakInFlight   int  // most requests out at once
	InFlightCap    int  // --max-in-flight, or --workers
	Fixed          bool // --workers N
	Warned         bool // the rate fell short and a WARN line said why
	Shared         bool // the rate is the account's, shared by the processes on a shared ledger
}

// String is the summary's text line.
func (r RunStats) String() string {
	var b strings.Builder
	n := r.Recharges + r.Enquiries
	fmt.Fprintf(&b, "sent %d requests (%d recharges, %d status enquiries)", n, r.Recharges, r.Enquiries)
	switch {
	case r.SendPhase >= time.Second && n > 0:
		// The rate is the rate requests went out at, up to the last: an
		// interrupted run's send phase also waits out the requests still
		// out (143 requests in 27.8 s read as "at 49.7 requests/s").
		fmt.Fprintf(&b, "; the send phase took %s, requests going out at %.1f requests/s", r.SendPhase.Round(100*time.Millisecond), r.AchievedRate)
		switch {
		case r.ConfiguredRate > 0 && r.Shared:
			// Each process's own rate is its share: three processes each
			// said "50 of 150/s" and read as short of it.
			fmt.Fprintf(&b, " of %g/s configured for the account, shared by every process on this ledger", r.ConfiguredRate)
		case r.ConfiguredRate > 0:
			fmt.Fprintf(&b, " of %g/s configured", r.ConfiguredRate)
		default:
			b.WriteString(" (no --rate limit)")
		}
	case r.SendPhase > 0:
		// Averaged over less than a second the rate says nothing of --rate,
		// which bounds any one second (rate + burst): 265 requests in
		// 500 ms read as "530/s of 500/s configured".
		fmt.Fprintf(&b, "; the send phase took %s", r.SendPhase.Round(10*time.Millisecond))
	}
	if n > 0 {
		fmt.Fprintf(&b, "; latency p50 %s, p90 %s, p99 %s", roundLatency(r.LatencyP50), roundLatency(r.LatencyP90), roundLatency(r.LatencyP99))
	}
	fmt.Fprintf(&b, "; HTTP 429 answers %d", r.Throttled)
	if r.LowestRate > 0 {
		fmt.Fprintf(&b, " (the rate was lowered, down to %.0f/s at the lowest)", r.LowestRate)
	}
	mode := "--max-in-flight"
	if r.Fixed {
		mode = "--workers"
	}
	fmt.Fprintf(&b, "; peak in flight %d (%s %d)", r.PeakInFlight, mode, r.InFlightCap)
	return b.String()
}

// expected says how long rows take at rate, roughly: "about 8h20m".
func expected(rows int64, rate float64) string {
	if rate <= 0 || rows <= 0 {
		return ""
	}
	d := time.Duration(float64(rows) / rate * float64(time.Second))
	// Rounded before the form is chosen: 59m45s is "about 1h00m", not 60m.
	switch {
	case d.Round(time.Minute) >= time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("about %dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d.Round(time.Minute) >= 10*time.Minute:
		return fmt.Sprintf("about %dm", int(d.Round(time.Minute).Minutes()))
	case d.Round(time.Second) >= time.Minute:
		d = d.Round(time.Second)
		return fmt.Sprintf("about %dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("about %ds", max(1, int(d.Round(time.Second).Seconds())))
}
