package batch

import (
	"strings"
	"testing"
	"time"
)

// A request that never left backs off exponentially with full jitter, up
// to Max, and is given up after MaxTries; a 429 waits exactly its
// Retry-After, and is given up after MaxThrottled.
func TestBackoffNext(t *testing.T) {
	clk := newTestClock()
	top := func() float64 { return 1 } // the upper edge of the jitter
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second, MaxTries: 6, MaxThrottled: 3, Now: clk.now, Rand: top}
	for _, tc := range []struct {
		tries int
		want  time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}} {
		at, ok := b.Next(Retry{Why: RetryNotSent, Tries: tc.tries})
		if !ok || at.Sub(clk.now()) != tc.want {
			t.Errorf("not sent, try %d: again after %v (%v), want %v", tc.tries, at.Sub(clk.now()), ok, tc.want)
		}
	}
	if _, ok := b.Next(Retry{Why: RetryNotSent, Tries: 6}); ok {
		t.Error("not sent: tried again after MaxTries")
	}
	b.Rand = func() float64 { return 0.25 }
	if at, _ := b.Next(Retry{Why: RetryNotSent, Tries: 3}); at.Sub(clk.now()) != 100*time.Millisecond {
		t.Errorf("jittered try 3: after %v, want 100ms", at.Sub(clk.now()))
	}
	if at, ok := b.Next(Retry{Why: RetryThrottled, Tries: 1, RetryAfter: 7 * time.Second}); !ok || at.Sub(clk.now()) != 7*time.Second {
		t.Errorf("429 with Retry-After 7s: again after %v (%v), want 7s", at.Sub(clk.now()), ok)
	}
	if at, ok := b.Next(Retry{Why: RetryThrottled, Tries: 2}); !ok || at.Sub(clk.now()) != 200*time.Millisecond {
		t.Errorf("429 without Retry-After, try 2: again after %v (%v), want the backoff's 200ms", at.Sub(clk.now()), ok)
	}
	if _, ok := b.Next(Retry{Why: RetryThrottled, Tries: 3, RetryAfter: time.Second}); ok {
		t.Error("429: tried again after MaxThrottled")
	}
	d := Backoff{Base: time.Millisecond, Max: time.Millisecond, Now: clk.now}
	if _, ok := d.Next(Retry{Why: RetryNotSent, Tries: 4}); !ok {
		t.Error("default MaxTries: gave up at 4")
	}
	if _, ok := d.Next(Retry{Why: RetryThrottled, Tries: 19}); !ok {
		t.Error("default MaxThrottled: gave up at 19")
	}
}

// A row's message says what happened: one 429 and an interrupt is not
// "the provider kept answering 429".
func TestGaveUpSaysWhatHappened(t *testing.T) {
	now := time.Unix(2000, 0)
	for _, tc := range []struct {
		name              string
		r                 Retry
		last              string
		interrupted, stop bool
		want, wantNot     string
	}{
		{"one 429, then an interrupt", Retry{Why: RetryThrottled, Tries: 1, First: now}, "HTTP 429: throttled", true, false,
			"not sent: interrupted while waiting to retry; the provider answered 429 (throttled)", "tries"},
		{"429s to the end", Retry{Why: RetryThrottled, Tries: 20, First: now.Add(-95 * time.Second)}, "HTTP 429: throttled", false, false,
			"not sent: the provider answered 429 (throttled) to 20 tries over 1m35s", "interrupted"},
		{"a stop while waiting", Retry{Why: RetryThrottled, Tries: 2, First: now.Add(-time.Second)}, "", false, true,
			"not sent: the run stopped before the retry; the provider answered 429 (throttled) to 2 tries over 1s", "interrupted"},
		{"no connection", Retry{Why: RetryNotSent, Tries: 5}, "not sent: connection refused", false, false,
			"not sent: connection refused (5 tries)", "not sent: not sent"},
	} {
		why := "exhausted"
		if tc.interrupted {
			why = "interrupted"
		} else if tc.stop {
			why = "stopped"
		}
		got := "not sent: " + gaveUp(tc.r, tc.last, now, why)
		if got != tc.want || strings.Contains(got, tc.wantNot) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNextResendForgetsRowsAlreadyDue: the earliest resend still to come
// is found, and rows already due are dropped, so a long resolve does not
// keep every line it ever waited on.
func TestNextResendForgetsRowsAlreadyDue(t *testing.T) {
	var e Engine
	now := time.Unix(1000, 0)
	e.waitToResend(1, now.Add(-time.Second))
	e.waitToResend(2, now)
	e.waitToResend(3, now.Add(5*time.Second))
	e.waitToResend(4, now.Add(2*time.Second))
	if due, ok := e.nextResend(now); !ok || !due.Equal(now.Add(2*time.Second)) {
		t.Errorf("nextResend = %v, %v; want %v, true", due, ok, now.Add(2*time.Second))
	}
	if len(e.waiting) != 2 {
		t.Errorf("rows still waiting: %v; want lines 3 and 4 only", e.waiting)
	}
	if _, ok := e.nextResend(now.Add(5 * time.Second)); ok || len(e.waiting) != 0 {
		t.Errorf("after every row was due: ok %v, waiting %v; want none", ok, e.waiting)
	}
}
