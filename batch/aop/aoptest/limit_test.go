package aoptest

import (
	"fmt"
	"testing"
	"time"
)

// The window slides: a request is let through when fewer than n went in
// the second before it, whatever the calendar second.
func TestRPSLimitSlides(t *testing.T) {
	l := newRPSLimit(3)
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	for _, tc := range []struct {
		at   int64
		ok   bool
		wait time.Duration
	}{
		{ms(0), true, 0}, {ms(100), true, 0}, {ms(900), true, 0},
		{ms(950), false, 50 * time.Millisecond}, // three in the last second
		{ms(999), false, time.Millisecond},
		{ms(1000), true, 0},                      // the first has left the window
		{ms(1050), false, 50 * time.Millisecond}, // 100, 900 and 1000 are in it
		{ms(1100), true, 0},
		{ms(3000), true, 0},
	} {
		ok, wait := l.allow(tc.at)
		if ok != tc.ok || wait != tc.wait {
			t.Errorf("at %v: allow = %v, %v; want %v, %v", time.Duration(tc.at), ok, wait, tc.ok, tc.wait)
		}
	}
}

// Above LimitRPS the sandbox answers 429 with Retry-After and records
// nothing; enquiries count toward the limit too; a second later requests
// go through again.
func TestLimitRPS(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LimitRPS = 4
	ts := start(t, cfg)
	c := testClient(t, 5*time.Second)
	var ok, limited []string
	for i := range 3 {
		ref := fmt.Sprintf("lim-%d", i)
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge(ref, 311, "10"), nil)
		if got.Code == 1 {
			ok = append(ok, ref)
		}
	}
	if st, _ := enquire(t, c, ts, "lim-0"); st.Code != 0 && st.HTTP != 200 {
		t.Fatalf("enquiry: HTTP %d", st.HTTP)
	}
	for i := 3; i < 6; i++ {
		ref := fmt.Sprintf("lim-%d", i)
		got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge(ref, 311, "10"), nil)
		if got.HTTP != 429 || got.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: HTTP %d Retry-After %q, want 429 and 1", ref, got.HTTP, got.Header.Get("Retry-After"))
		}
		limited = append(limited, ref)
	}
	if len(ok) != 3 {
		t.Fatalf("%d of the first 3 recharges went through, want 3", len(ok))
	}
	for _, ref := range limited {
		if ts.Charged(ref) != 0 {
			t.Errorf("%s was charged although answered 429", ref)
		}
		if ts.Requests(ref) != 1 {
			t.Errorf("%s: Requests = %d, want 1 (a throttled request still counts)", ref, ts.Requests(ref))
		}
	}
	if got := ts.Stats().Faults.Limited; got != 3 {
		t.Errorf("Stats().Faults.Limited = %d, want 3", got)
	}
	if st := mustPost(t, c, ts.URL+"/api/AOP/RechargeStatus", statusBody("lim-0"), nil); st.HTTP != 429 {
		t.Errorf("an enquiry over the limit: HTTP %d, want 429", st.HTTP)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge(limited[0], 311, "10"), nil); got.Code != 1 {
		t.Errorf("a second later: code %d (HTTP %d), want 1", got.Code, got.HTTP)
	}
}

// SetLatency slows the answers that follow.
func TestSetLatency(t *testing.T) {
	ts := start(t, DefaultConfig())
	c := testClient(t, 5*time.Second)
	ts.SetLatency(80*time.Millisecond, 0)
	at := time.Now()
	mustPost(t, c, ts.URL+"/api/AOP/Recharge", recharge("slow-1", 311, "10"), nil)
	if d := time.Since(at); d < 80*time.Millisecond {
		t.Errorf("answer after %v, want at least the 80ms set", d)
	}
}
