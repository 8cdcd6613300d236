package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// The run says at its start how long it should take, and its summary
// (text, --log-format json, --metrics-file) carries the configured and
// achieved rate, latency percentiles, the 429s and the most in flight.
func TestRunSummaryCarriesTheRunsFigures(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) {
		c.Latency = 20 * time.Millisecond
		c.ThrottleRate = 0.05
		c.RetryAfter = time.Second
	})
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(200, "S"))
	metrics := filepath.Join(t.TempDir(), "aopbatch.prom")
	args := []string{"run", "--csv", csvPath, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--latitude", "1", "--longitude", "1",
		"--rate", "100", "--progress", "never", "--log-format", "json", "--metrics-file", metrics}
	p := aopbatch(t, nil, args...)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, `"msg":"200 rows at 100/s: about 2s"`) {
		t.Errorf("no line with the expected duration at the start:\n%s", p.stderr)
	}
	var sum struct {
		Msg   string `json:"msg"`
		Batch string `json:"batch"`
		Run   struct {
			ConfiguredRate float64            `json:"configured_rate"`
			AchievedRate   float64            `json:"achieved_rate"`
			Recharges      int64              `json:"recharges"`
			Throttled      int64              `json:"throttled_429"`
			Latency        map[string]float64 `json:"latency_ms"`
			PeakInFlight   int                `json:"peak_in_flight"`
			InFlightCap    int                `json:"in_flight_cap"`
			Workers        string             `json:"workers"`
		} `json:"run"`
	}
	for line := range strings.Lines(p.stdout) {
		if strings.Contains(line, `"msg":"run summary"`) {
			if err := json.Unmarshal([]byte(line), &sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, st := sum.Run, sb.Stats()
	if sum.Msg == "" {
		t.Fatalf("no JSON run summary:\n%s", p.stdout)
	}
	if r.ConfiguredRate != 100 || r.AchievedRate <= 0 || r.AchievedRate > 105 {
		t.Errorf("rates: configured %v achieved %v, want 100 and at most about that", r.ConfiguredRate, r.AchievedRate)
	}
	if r.Recharges != st.Recharges || r.Throttled != st.Faults.Throttle || r.Throttled == 0 {
		t.Errorf("%d recharges and %d 429s in the summary; the sandbox saw %d and answered %d 429s", r.Recharges, r.Throttled, st.Recharges, st.Faults.Throttle)
	}
	if r.Latency["p50"] < 20 || r.Latency["p99"] < r.Latency["p50"] {
		t.Errorf("latency %v, want p50 at least the sandbox's 20 ms, p99 above it", r.Latency)
	}
	if r.PeakInFlight < 1 || r.InFlightCap != 256 || r.Workers != "auto" {
		t.Errorf("in flight: peak %d cap %d workers %q, want at least 1, 256, auto", r.PeakInFlight, r.InFlightCap, r.Workers)
	}
	prom, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`aopbatch_run_rate_per_second{batch="`, `kind="configured"} 100`, `kind="achieved"}`,
		`aopbatch_run_throttled{batch="`, `aopbatch_run_latency_seconds{batch="`, `quantile="0.99"}`, `aopbatch_run_in_flight{batch="`, `kind="peak"}`,
		`aopbatch_rows{batch="`, "aopbatch_run_exit_code{batch=\"" + sum.Batch + "\"} 0\n",
		"aopbatch_run_stopped{batch=\"" + sum.Batch + "\",reason=\"\"} 0\n"} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("metrics file lacks %q", want)
		}
	}

	// The text summary, on a rerun that sends nothing.
	p = aopbatch(t, nil, args[:len(args)-4]...)
	if p.code != 0 || !strings.Contains(p.stdout, "sent 0 requests") || !strings.Contains(p.stdout, "HTTP 429 answers 0") ||
		!strings.Contains(p.stdout, "peak in flight 0 (--max-in-flight 256)") {
		t.Errorf("rerun: exit %d, text summary:\n%s", p.code, p.stdout)
	}
}

// A row whose request was answered 429 once and then interrupted while
// waiting to retry goes back to queued saying so; it is not "the provider
// kept answering 429".
func TestThrottledThenInterruptedSaysSo(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.ThrottleRate = 1; c.RetryAfter = 30 * time.Second })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(1, "I"))
	cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL))
	waitRecharges(t, sb, 1)
	time.Sleep(100 * time.Millisecond) // its answer is in
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, errb.String())
	}
	if n := sb.Stats().Recharges; n != 1 {
		t.Fatalf("%d recharges, want 1", n)
	}
	_, _, all := ledgerRows(t, db)
	msg := all[0].Message
	if all[0].State != ledger.StateQueued || !strings.Contains(msg, "interrupted while waiting to retry") ||
		!strings.Contains(msg, "429") || strings.Contains(msg, "kept") || strings.Contains(msg, "tries") {
		t.Errorf("row %s %q, want queued, saying it was interrupted after one 429", all[0].State, msg)
	}
}

// The command line's defaults are the engine's.
func TestFlagDefaultsAreTheEngines(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c connFlags
	c.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.engineConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := batch.DefaultConfig()
	if got.Workers != d.Workers || got.MaxInFlight != d.MaxInFlight || got.Rate != d.Rate || got.Burst != d.Burst ||
		got.Timeout != d.Timeout || got.MaxAttempts != d.MaxAttempts || got.HoldAfter != d.HoldAfter || got.ResolveTimeout != d.ResolveTimeout {
		t.Errorf("flag defaults %+v, engine defaults %+v", got, d)
	}
	if d.Workers != 0 || d.MaxInFlight != 256 {
		t.Errorf("engine defaults: workers %d, max in flight %d; want automatic (0) and 256", d.Workers, d.MaxInFlight)
	}
}
