package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// scenario is a run against a provider as it really answers (issue 13):
// slow, slowing down, throttling, or held back by a cap. aopbatch runs with
// its default flags but for those named.
type scenario struct {
	name    string
	title   string
	rows    int // before -scale
	minRows int // what the measure needs, whatever -scale says (but for a smoke run)
	rate    float64
	sandbox func(*aoptest.Config)
	args    []string
	step    bool // latency 100 ms -> 1 s once half the rows have arrived
	check   func(b *bench, r scenarioResult)
}

// smokeScale is the -scale below which a run is a smoke test: the provider
// sections then run a handful of rows, too few for what some of them
// measure (a WARN after 30 s, the rate 10 s after a step).
const smokeScale = 0.01

// Targets of issue 13.
const (
	targetSlowShare     = 0.97 // of --rate, 300 ms ± 100 ms
	targetStepShare     = 0.95 // of --rate, back within
	targetStepRecovery  = 10 * time.Second
	targetThrottleRows  = 135.0 // rows/s under a 150/s throttle at --rate 200
	targetRandom429Rows = 180.0 // rows/s with 2% random 429s at --rate 200
	stepLatency         = time.Second
)

func scenarios() []scenario {
	slow := func(c *aoptest.Config) { c.Latency, c.LatencyJitter = 200*time.Millisecond, 200*time.Millisecond }
	return []scenario{
		{
			name: secSlow, title: "300 ms ± 100 ms, --rate 500, default flags", rows: 10_000, rate: 500, sandbox: slow,
			check: func(b *bench, r scenarioResult) {
				a := r.run.sendRate()
				b.check(r.label+": achieved rate at the sandbox", fmt.Sprintf("%.1f req/s (%.1f%%)", a, 100*a/r.rate),
					fmt.Sprintf("≥ %.0f (%.0f%%)", targetSlowShare*r.rate, 100*targetSlowShare), a >= targetSlowShare*r.rate)
				b.add(r.label+": peak in flight (summary)", strconv.Itoa(r.summary.PeakInFlight))
			},
		},
		{
			name: secStep, title: "latency 100 ms, then 1 s from halfway, --rate 200", rows: 6_000, minRows: 4_800, rate: 200, step: true,
			sandbox: func(c *aoptest.Config) { c.Latency = 100 * time.Millisecond },
			check: func(b *bench, r scenarioResult) {
				rec, ok := recovery(r.run.arrivals, r.stepAt, targetStepShare*r.rate)
				v := "never"
				if ok {
					v = fmt.Sprintf("%.1f s", rec.Seconds())
				}
				b.check(r.label+": back to 95% of --rate after the step", v,
					fmt.Sprintf("≤ %.0f s", targetStepRecovery.Seconds()), ok && rec <= targetStepRecovery)
				after := rateBetween(r.run.arrivals, r.stepAt+targetStepRecovery, r.run.lastAt)
				b.check(r.label+": rate from 10 s after the step to the end", fmt.Sprintf("%.1f req/s", after),
					fmt.Sprintf("≥ %.0f", targetStepShare*r.rate), after >= targetStepShare*r.rate)
				b.add(r.label+": peak in flight (summary)", strconv.Itoa(r.summary.PeakInFlight))
			},
		},
		{
			name: secThrottle, title: "the provider throttles above 150/s (--limit-rps 150), 300 ms ± 100 ms, --rate 200", rows: 6_000, rate: 200,
			sandbox: func(c *aoptest.Config) { slow(c); c.LimitRPS = 150 },
			check: func(b *bench, r scenarioResult) {
				rows := r.rowsPerSecond()
				b.check(r.label+": rows/s (first to last Recharge)", fmt.Sprintf("%.1f", rows),
					fmt.Sprintf("≥ %.0f", targetThrottleRows), rows >= targetThrottleRows)
				b.check(r.label+": rows success, none failed or held for a 429", fmt.Sprintf("%d of %d", r.success, r.rows),
					"all", r.success == r.rows)
				b.add(r.label+": 429 answers / Recharge requests", fmt.Sprintf("%d / %d (%.1f%%)", r.throttled, r.recharges, 100*float64(r.throttled)/float64(max(r.recharges, 1))))
			},
		},
		{
			name: secRandom429, title: "2% of requests answered 429, 300 ms ± 100 ms, --rate 200", rows: 6_000, rate: 200,
			sandbox: func(c *aoptest.Config) { slow(c); c.ThrottleRate = 0.02; c.Seed = 13 },
			check: func(b *bench, r scenarioResult) {
				rows := r.rowsPerSecond()
				b.check(r.label+": rows/s (first to last Recharge)", fmt.Sprintf("%.1f", rows),
					fmt.Sprintf("≥ %.0f", targetRandom429Rows), rows >= targetRandom429Rows)
				b.add(r.label+": 429 answers / Recharge requests", fmt.Sprintf("%d / %d (%.1f%%)", r.throttled, r.recharges, 100*float64(r.throttled)/float64(max(r.recharges, 1))))
			},
		},
		{
			name: secCap, title: "--max-in-flight 8 against 300 ms, --rate 100", rows: 1_200, minRows: 1_100, rate: 100,
			sandbox: func(c *aoptest.Config) { c.Latency = 300 * time.Millisecond },
			args:    []string{"--max-in-flight", "8"},
			check: func(b *bench, r scenarioResult) {
				b.check(r.label+": \"sending below --rate\" WARN lines", strconv.Itoa(r.warnings), "1", r.warnings == 1)
				want := 8 / 0.3
				a := r.summary.AchievedRate
				b.check(r.label+": summary achieved / configured", fmt.Sprintf("%.1f / %g req/s", a, r.summary.ConfiguredRate),
					fmt.Sprintf("≈ %.1f / 100", want), a >= 0.9*want && a <= 1.05*want && r.summary.ConfiguredRate == r.rate)
				if r.warnLine != "" {
					b.add(r.label+": the WARN line", "`"+r.warnLine+"`")
				}
			},
		},
	}
}

// runSummary is the part of aopbatch's JSON run summary the scenarios read.
type runSummary struct {
	ConfiguredRate float64 `json:"configured_rate"`
	AchievedRate   float64 `json:"achieved_rate"`
	PeakInFlight   int     `json:"peak_in_flight"`
	InFlightCap    int     `json:"in_flight_cap"`
	Throttled      int64   `json:"throttled_429"`
}

// scenarioResult is one finished scenario.
type scenarioResult struct {
	label     string
	rate      float64
	rows      int
	run       runResult
	summary   runSummary
	success   int
	warnings  int    // "sending below --rate" lines
	warnLine  string // the first, shortened
	stepAt    time.Duration
	throttled int64 // 429s the sandbox answered to Recharge
	recharges int64
}

// rowsPerSecond is rows over the span from the first Recharge to the last.
func (r scenarioResult) rowsPerSecond() float64 {
	if r.run.sendSpan() <= 0 {
		return 0
	}
	return float64(r.rows) / r.run.sendSpan().Seconds()
}

// scenario runs sc and adds its lines to the table.
func (b *bench) scenario(ctx context.Context, sc scenario) error {
	n := b.cfg.rows(sc.rows)
	if b.cfg.Scale >= smokeScale {
		n = max(n, sc.minRows)
	}
	cfg := aoptest.DefaultConfig()
	if sc.sandbox != nil {
		sc.sandbox(&cfg)
	}
	csvPath, db := b.files(sc.name)
	if err := removeLedger(db); err != nil {
		return err
	}
	if err := writeCSV(csvPath, strings.ToUpper(sc.name[:1])+sc.name[1:]+"-", n); err != nil {
		return err
	}
	sb, err := startSandboxWith(cfg, n)
	if err != nil {
		return err
	}
	defer sb.close()
	b.logf("%s: aopbatch run, %d rows, %s", sc.name, n, sc.title)
	args := append([]string{"run", "--csv", csvPath, "--ledger", db, "--base-url", sb.url,
		"--registration-id", registrationID, "--rate", strconv.FormatFloat(sc.rate, 'f', -1, 64),
		"--progress", "never", "--resolve-timeout", resolveTimeout, "--log-format", "json"}, sc.args...)

	var stepIdx int
	stepDone := make(chan struct{})
	var wg sync.WaitGroup
	if sc.step {
		mark := sb.count()
		wg.Go(func() {
			for {
				select {
				case <-stepDone:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if c := sb.count() - mark; c >= n/2 {
					sb.sb.SetLatency(stepLatency, 0)
					stepIdx = c
					return
				}
			}
		})
	}
	var out [2]bytes.Buffer // stdout, stderr
	r, err := b.aopbatchArgs(ctx, sb, args, nil, &out)
	close(stepDone)
	wg.Wait()
	if err != nil {
		return err
	}
	st := sb.sb.Stats()
	res := scenarioResult{label: sc.name + ", " + sc.title + fmt.Sprintf(", %d rows", n), rate: sc.rate, rows: n, run: r,
		throttled: st.Faults.Throttle + st.Faults.Limited, recharges: st.Recharges}
	for _, t := range sb.sb.Txns() {
		if t.Status == "1" {
			res.success++
		}
	}
	if sc.step && stepIdx > 0 && stepIdx <= len(r.arrivals) {
		res.stepAt = r.arrivals[stepIdx-1]
	}
	sc2 := bufio.NewScanner(io.MultiReader(&out[0], &out[1]))
	sc2.Buffer(make([]byte, 1<<20), 1<<20)
	for sc2.Scan() {
		line := sc2.Text()
		var v struct {
			Msg string     `json:"msg"`
			Run runSummary `json:"run"`
		}
		if json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		switch v.Msg {
		case "run summary":
			res.summary = v.Run
		case "sending below --rate":
			res.warnings++
			if res.warnLine == "" {
				res.warnLine = warnText(line)
			}
		}
	}
	if b.cfg.Dir != "" {
		if err := writeArrivals(filepath.Join(b.dir, sc.name+"-arrivals.txt"), r.arrivals); err != nil {
			return err
		}
	}
	sc.check(b, res)
	return nil
}

// warnText renders the JSON WARN line's figures for the table.
func warnText(line string) string {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return line
	}
	var parts []string
	for _, k := range []string{"configured", "achieved", "latency_p50", "latency_p99", "in_flight_cap", "throttled_429", "limited_by"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// recovery is how long after step the first one-second window of arrivals
// at perSecond or more ends.
func recovery(ts []time.Duration, step time.Duration, perSecond float64) (time.Duration, bool) {
	if len(ts) == 0 || step <= 0 {
		return 0, false
	}
	last := ts[len(ts)-1]
	for t := step; t+time.Second <= last; t += 50 * time.Millisecond {
		if float64(countBetween(ts, t, t+time.Second)) >= perSecond {
			return t + time.Second - step, true
		}
	}
	return 0, false
}

// rateBetween is the arrivals per second between the first and the last
// of those in [from, to].
func rateBetween(ts []time.Duration, from, to time.Duration) float64 {
	first, last, n := time.Duration(0), time.Duration(0), 0
	for _, t := range ts {
		if t < from || t > to {
			continue
		}
		if n == 0 {
			first = t
		}
		last = t
		n++
	}
	if n < 2 || last <= first {
		return 0
	}
	return float64(n-1) / (last - first).Seconds()
}

// countBetween counts the sorted arrivals in [from, to).
func countBetween(ts []time.Duration, from, to time.Duration) int {
	n := 0
	for _, t := range ts {
		if t >= from && t < to {
			n++
		}
	}
	return n
}
