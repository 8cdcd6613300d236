package batch

import (
	"context"
	"math"
	"time"
)

// take waits for a slot at the gate, then for the rate limiter's token:
// what every request needs before it goes out. A slot taken first means a
// token is never wasted waiting for a slot.
func (e *Engine) take(ctx context.Context) (ticket, error) {
	if err := e.gate.acquire(ctx); err != nil {
		return ticket{}, err
	}
	tk, err := e.lim.Wait(ctx)
	if err != nil {
		e.gate.release()
		return ticket{}, err
	}
	return tk, nil
}

// untake gives back the in-flight slot taken for a request that did not
// go, and leaves it out of the requests let through (the achieved rate,
// the concurrency controller). Its token and its place in the one-second
// window stay spent: a row held or stopped after its wait costs the rate
// one request.
func (e *Engine) untake(tk ticket) {
	e.lim.done(tk, time.Time{})
	e.lim.granted.Add(-1)
	e.gate.release()
}

// sending counts a request going out (+1) or back (-1).
func (e *Engine) sending(d int) {
	e.gate.sending(d)
	e.progress.InFlight.Add(int64(d))
}

// answered ends a request taken with tk: wrote is when it was written
// out, lat how long its answer took. reached says it got to the provider
// (anything but "not sent"), throttled that the answer was 429, timeout
// that none came within --timeout, failed that it was a 5xx; both are
// overloads. The concurrency controller and the 429 policy learn from it.
func (e *Engine) answered(tk ticket, wrote time.Time, lat time.Duration, reached, throttled, timeout, failed bool) {
	e.lim.done(tk, wrote)
	e.gate.release()
	if !reached {
		return
	}
	e.answers.Add(1)
	overload := timeout || failed
	if overload {
		e.overloads.Add(1)
	}
	if timeout {
		e.timeouts.Add(1)
	}
	e.lat.add(lat)
	rate, changed := e.thr.observe(throttled, e.conc.observe(lat, overload))
	if !changed {
		return
	}
	e.lim.setRate(rate)
	if cur := e.lim.rate(); cur > 0 && cur < e.cfg.Rate || e.cfg.Rate <= 0 && cur > 0 {
		e.thrMu.Lock()
		now := e.cfg.Now()
		quiet := now.Sub(e.thrLogged) < time.Minute
		if !quiet {
			e.thrLogged = now
		}
		e.thrMu.Unlock()
		if !quiet {
			e.cfg.Log.Info("the provider keeps answering 429: send rate lowered to what it accepts; it climbs back as the 429s stop",
				"rate_per_s", roundRate(cur))
		}
	}
}

// roundRate keeps a rate's whole requests a second, or one decimal below
// 10/s: a number, which JSON logs keep as one.
func roundRate(r float64) float64 {
	if r >= 10 {
		return math.Round(r)
	}
	return math.Round(r*10) / 10
}

// monitor moves the in-flight limit every 100 ms, and while sending
// (watch) says once why the rate falls short of --rate. It returns the
// function that stops it.
func (e *Engine) monitor(watch bool) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	rw := newRateWatch(e.cfg.Rate)
	go func() {
		defer close(stopped)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		lastWatch := e.cfg.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			waiting, _, peakOut := e.gate.snapshot()
			limit := e.conc.adjust(sample{rate: e.lim.rate(), granted: e.lim.granted.Load(),
				slotWaiters: waiting, tokenWaiters: e.lim.waiting.Load(), peakOut: peakOut})
			e.gate.setLimit(limit)
			e.progress.Limit.Store(int64(limit))
			if now := e.cfg.Now(); watch && now.Sub(lastWatch) >= time.Second {
				lastWatch = now
				// On a shared ledger --rate is the account's: while the
				// account's schedule is full, this process's share of it
				// is no shortfall.
				shared := e.lim.shared != nil && e.lim.shared.bookedSince(time.Now().Add(-2*time.Second))
				if achieved, warn := rw.check(now, e.lim.granted.Load(), e.rowsWaiting() && !e.stopping() && !shared); warn {
					e.warned.Store(true)
					s := e.shortfall(achieved, now.Sub(rw.since))
					e.cfg.Log.Warn("sending below --rate", s.Args()...)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// rowsWaiting says rows are waiting to be sent: some are still to be
// handed out, or workers hold them while waiting out a Retry-After or,
// after it, for a token of the lowered rate. Once a throttled run's whole
// file is out, most of its rows wait for tokens (29 to 1 pausing, in a 5/s
// run): counting only the pausing ones, a check that found none paused
// began the 5 s judgement again, and the WARN could never come.
func (e *Engine) rowsWaiting() bool {
	return e.feeding.Load() || e.pausing.Load() > 0 || e.lim.waiting.Load() > 0
}

// shortfall gathers the WARN line's figures.
func (e *Engine) shortfall(achieved float64, d time.Duration) Shortfall {
	out, _, limit := e.gate.counts()
	cl, capN, fixed := e.conc.state()
	bad, size := e.brk.state()
	th, _ := e.thr.state()
	waiting, _, _ := e.gate.peek()
	return Shortfall{
		Configured: e.cfg.Rate, Achieved: achieved, For: d,
		P50: e.lat.quantile(0.5), P99: e.lat.quantile(0.99),
		InFlight: out, Limit: max(limit, cl), Cap: capN, Fixed: fixed, Blocked: waiting > 0,
		Rate: e.lim.rate(), Accepted: e.thr.accepted(), Answers: e.answers.Load(), Throttled: th, Overloads: e.overloads.Load(),
		Timeouts: e.timeouts.Load(), Timeout: e.cfg.Timeout,
		BreakerBad: bad, Breaker: size, BreakerRatio: e.cfg.BreakerRatio,
	}
}

// Stats returns what the run measured so far: the send phase's rate, the
// provider's latency, its 429s, the most requests in flight.
func (e *Engine) Stats() RunStats {
	_, maxOut, _ := e.gate.counts()
	_, capN, fixed := e.conc.state()
	th, lowest := e.thr.state()
	r := RunStats{
		ConfiguredRate: e.cfg.Rate,
		Recharges:      e.progress.Sent.Load(),
		Enquiries:      e.progress.Enquired.Load(),
		Throttled:      th,
		LowestRate:     lowest,
		LatencyP50:     e.lat.quantile(0.5),
		LatencyP90:     e.lat.quantile(0.9),
		LatencyP99:     e.lat.quantile(0.99),
		PeakInFlight:   maxOut,
		InFlightCap:    capN,
		Fixed:          fixed,
		Warned:         e.warned.Load(),
		Shared:         e.lim.shared != nil,
	}
	if began := e.sendBegan.Load(); began > 0 {
		end, n := e.sendEnded.Load(), e.sendGranted.Load()
		if end == 0 {
			end, n = e.cfg.Now().UnixNano(), e.lim.granted.Load()-e.sendGranted0.Load()
		}
		r.SendPhase = time.Duration(end - began)
		// The rate requests went out at: up to the last one let through,
		// not its answer, which against a slow provider adds its latency
		// (2 s of a 7 s phase at 2 s latency: 54.7/s of 100/s).
		// n requests from the phase's start to the last make n-1 gaps.
		switch last := e.lim.lastAt.Load(); {
		case r.Recharges+r.Enquiries == 0:
			// Tokens let through, but no request made (every try without
			// a credential): no rate to speak of.
		case n > 1 && last > began && last < end:
			r.AchievedRate = float64(n-1) / time.Duration(last-began).Seconds()
		case r.SendPhase > 0:
			r.AchievedRate = float64(n) / r.SendPhase.Seconds()
		}
	}
	return r
}
