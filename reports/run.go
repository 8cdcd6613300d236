package reports

import (
	"fmt"
	"io"
	"strconv"
)

// RunFigures is what one run of the engine measured of the provider and
// of itself: the batch's figures say what happened to the rows, these how
// fast, and what held the run back.
type RunFigures struct {
	ConfiguredRate float64 // requests per second asked for; 0 = no limit
	AchievedRate   float64 // requests per second over the send phase; 0 when none went out
	SendSeconds    float64 // length of the send phase
	Recharges      int64
	Enquiries      int64
	Throttled      int64   // HTTP 429 answers
	LatencyP50     float64 // seconds, of every answer
	LatencyP90     float64
	LatencyP99     float64
	PeakInFlight   int
	InFlightCap    int
	// ExitCode is what the run exits with: 0 every row succeeded, 2
	// finished with rows failed, refunded, rejected or in conflict, 3
	// not finished (stopped, interrupted, taken over, rows unsettled).
	ExitCode int
	// TakenOver: the run stopped because another process took the
	// batch over (paused or stalled past its lease); the batch's figures
	// are then a moment of that process's run.
	TakenOver bool
	// StopReason is why the run stopped sending (the engine's stop
	// reasons: account, auth, tls, breaker, known-refs, retry-paid, unknown-limit,
	// ledger, lease), "" when it did not stop.
	StopReason string
}

// WriteMetricsWithRun writes what WriteMetrics writes, and the run's
// figures after it, in one atomic replacement of path.
func WriteMetricsWithRun(path string, s *Summary, r RunFigures) error {
	err := writeAtomic(path, 0o644, func(w io.Writer) error {
		if err := s.writeMetrics(w); err != nil {
			return err
		}
		return r.writeMetrics(w, s.Batch)
	})
	if err != nil {
		return fmt.Errorf("write metrics %s: %w", path, err)
	}
	return nil
}

func (r RunFigures) writeMetrics(w io.Writer, batch string) error {
	p := &promWriter{w: w, batch: batch}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	// A run that sent nothing (the cron job's rerun of a batch already
	// done) measured no rate and no latency: a 0 written for them would
	// read as a provider that stopped answering, and an alert on the
	// achieved rate would fire every morning. They are left out; the
	// counts, zero, are true of that run. The achieved rate is 0 only
	// when no request went out in the send phase.
	p.family("aopbatch_run_rate_per_second", "gauge", "Send rate of the last run: configured (0 = no limit) and achieved over its send phase (absent when it sent nothing).")
	p.sample("aopbatch_run_rate_per_second", f(r.ConfiguredRate), "kind", "configured")
	if r.AchievedRate > 0 {
		p.sample("aopbatch_run_rate_per_second", f(r.AchievedRate), "kind", "achieved")
	}
	p.family("aopbatch_run_send_seconds", "gauge", "Length of the last run's send phase.")
	p.sample("aopbatch_run_send_seconds", f(r.SendSeconds))
	p.family("aopbatch_run_requests", "gauge", "Requests the last run made, by kind.")
	p.sample("aopbatch_run_requests", itoa(r.Recharges), "kind", "recharge")
	p.sample("aopbatch_run_requests", itoa(r.Enquiries), "kind", "status")
	p.family("aopbatch_run_throttled", "gauge", "HTTP 429 answers the last run got.")
	p.sample("aopbatch_run_throttled", itoa(r.Throttled))
	if r.Recharges+r.Enquiries > 0 {
		p.family("aopbatch_run_latency_seconds", "gauge", "Answer latency percentiles of the last run (absent when it sent nothing).")
		p.sample("aopbatch_run_latency_seconds", f(r.LatencyP50), "quantile", "0.5")
		p.sample("aopbatch_run_latency_seconds", f(r.LatencyP90), "quantile", "0.9")
		p.sample("aopbatch_run_latency_seconds", f(r.LatencyP99), "quantile", "0.99")
	}
	// A run that ended early (its lease lost to another host, a stop)
	// wrote the batch as it was then: the code says so beside it, for an
	// alert that cannot tell from the figures alone.
	p.family("aopbatch_run_exit_code", "gauge", "Exit code of the last run: 0 every row succeeded; 2 finished, some rows failed, refunded, rejected or in conflict; 3 not finished (run again).")
	p.sample("aopbatch_run_exit_code", itoa(int64(r.ExitCode)))
	p.family("aopbatch_run_in_flight", "gauge", "Requests in flight in the last run: the most at once, and the cap.")
	p.sample("aopbatch_run_in_flight", itoa(int64(r.PeakInFlight)), "kind", "peak")
	p.sample("aopbatch_run_in_flight", itoa(int64(r.InFlightCap)), "kind", "cap")
	taken := int64(0)
	if r.TakenOver {
		taken = 1
	}
	p.family("aopbatch_run_taken_over", "gauge", "1 when the last run stopped because another process took the batch over: that process runs it now.")
	p.sample("aopbatch_run_taken_over", itoa(taken))
	// One sample, its reason a label: an alert routes a wallet stop to
	// whoever tops it up, a file sent before to whoever owns the ledger.
	stopped := int64(0)
	if r.StopReason != "" {
		stopped = 1
	}
	p.family("aopbatch_run_stopped", "gauge", "1 when the last run stopped sending before the batch was done, reason naming why (account, auth, tls, breaker, known-refs, retry-paid, unknown-limit, ledger, lease); 0 with reason \"\" when it did not stop.")
	p.sample("aopbatch_run_stopped", itoa(stopped), "reason", r.StopReason)
	return p.err
}
