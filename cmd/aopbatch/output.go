package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/reports"
)

// writeCounts prints counts already read (counting reads the whole batch's
// index: once per command is enough).
func writeCounts(w io.Writer, b ledger.Batch, c ledger.Counts) error {
	fmt.Fprintf(w, "batch %s (%s): %d rows\n", b.ID, b.Source, c.Total().Rows)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "state\trows\tamount (Rs)\t")
	for _, s := range ledger.States {
		t, ok := c[s]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t\n", s, t.Rows, batch.FormatRupees(t.Paise))
	}
	tot := c.Total()
	fmt.Fprintf(tw, "total\t%d\t%s\t\n", tot.Rows, batch.FormatRupees(tot.Paise))
	return tw.Flush()
}

// printProblems shows the first rejected and conflict rows, so a person sees
// what to fix without opening a report; total is how many there are. With
// a JSON log (jsonLog not nil) each is a log line instead.
func printProblems(ctx context.Context, l ledger.Store, b ledger.Batch, w io.Writer, jsonLog *slog.Logger, max int, total int64) {
	n := 0
	for _, s := range []ledger.State{ledger.StateRejected, ledger.StateConflict} {
		after := 0
		for n < max {
			page, err := l.Page(ctx, b.Seq, s, after, max)
			if err != nil || len(page) == 0 {
				break
			}
			for _, r := range page {
				if n == max {
					break
				}
				if jsonLog != nil {
					jsonLog.Warn("row not accepted", "line", r.Line, "state", string(s), "reason", r.Message)
				} else {
					fmt.Fprintf(w, "  %s: %s\n", s, batch.WithLine(r.Line, r.Message))
				}
				n++
			}
			after = page[len(page)-1].Line
		}
	}
	if more := total - int64(n); more > 0 {
		if jsonLog != nil {
			jsonLog.Warn("more rows not accepted", "rows", more, "see", "aopbatch report: rejects.csv (rejected), rows.csv (conflict)")
			return
		}
		fmt.Fprintf(w, "  ... and %d more (aopbatch report lists them all: rejected rows in rejects.csv, conflicts in rows.csv)\n", more)
	}
}

// printJSONSummary prints the summary of a run with JSON logs: stdout's
// only line, a log record like those on stderr (time, level, msg "run
// summary") so one parser reads both. The level follows the exit code:
// INFO for 0, WARN for 2, ERROR otherwise. errMsg is the error the run
// ended with, "" for none; extra are more attributes.
func printJSONSummary(w io.Writer, b ledger.Batch, c ledger.Counts, code int, errMsg string, extra ...any) {
	counts := map[string]int64{"total": c.Total().Rows}
	amounts := map[string]int64{"total": c.Total().Paise}
	for _, s := range ledger.States {
		counts[string(s)] = c[s].Rows
		amounts[string(s)] = c[s].Paise
	}
	level := summaryLevel(code)
	args := append([]any{"batch", b.ID, "exit_code", code, "counts", counts, "amounts_paise", amounts}, extra...)
	if errMsg != "" {
		args = append(args, "error", errMsg)
	}
	slog.New(slog.NewJSONHandler(w, nil)).Log(context.Background(), level, "run summary", args...)
}

// summaryOut is stdout under --log-format json: it notes whether the
// run summary went out, so that a run ending without one (exit 1, or a
// second signal) writes a bare one instead, and only one.
type summaryOut struct {
	mu    sync.Mutex
	w     io.Writer
	wrote bool
	bared bool // a bare summary went out: nothing follows it
	code  int  // the exit code the summary written gives
}

func (o *summaryOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bared {
		return len(p), nil
	}
	o.wrote = true
	var sum struct {
		ExitCode int `json:"exit_code"`
	}
	if json.Unmarshal(p, &sum) == nil {
		o.code = sum.ExitCode
	}
	return o.w.Write(p)
}

// bare writes a summary with the exit code and error only, unless one
// was written, and returns the exit code the summary on stdout gives.
func (o *summaryOut) bare(code int, errMsg string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.wrote {
		return o.code
	}
	o.wrote, o.bared, o.code = true, true, code
	args := []any{"exit_code", code}
	if errMsg != "" {
		args = append(args, "error", errMsg)
	}
	slog.New(slog.NewJSONHandler(o.w, nil)).Log(context.Background(), summaryLevel(code), "run summary", args...)
	return code
}

// summaryLevel is a run summary's level: INFO for exit 0, WARN for 2,
// ERROR for 1 and 3.
func summaryLevel(code int) slog.Level {
	switch code {
	case exitOK:
		return slog.LevelInfo
	case exitFinishedNo:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// runJSON is the run's figures in the JSON summary.
func runJSON(r batch.RunStats) map[string]any {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }
	workers := "auto"
	if r.Fixed {
		workers = "fixed"
	}
	return map[string]any{
		"configured_rate":   r.ConfiguredRate,
		"achieved_rate":     math.Round(r.AchievedRate*100) / 100,
		"send_seconds":      math.Round(r.SendPhase.Seconds()*10) / 10,
		"recharges":         r.Recharges,
		"enquiries":         r.Enquiries,
		"throttled_429":     r.Throttled,
		"lowest_rate":       math.Round(r.LowestRate*100) / 100,
		"latency_ms":        map[string]float64{"p50": ms(r.LatencyP50), "p90": ms(r.LatencyP90), "p99": ms(r.LatencyP99)},
		"peak_in_flight":    r.PeakInFlight,
		"in_flight_cap":     r.InFlightCap,
		"workers":           workers,
		"rate_below_warned": r.Warned,
		"rate_shared":       r.Shared,
	}
}

// runFigures is the run's figures for the metrics file.
func runFigures(r batch.RunStats) reports.RunFigures {
	return reports.RunFigures{
		ConfiguredRate: r.ConfiguredRate, AchievedRate: r.AchievedRate, SendSeconds: r.SendPhase.Seconds(),
		Recharges: r.Recharges, Enquiries: r.Enquiries, Throttled: r.Throttled,
		LatencyP50: r.LatencyP50.Seconds(), LatencyP90: r.LatencyP90.Seconds(), LatencyP99: r.LatencyP99.Seconds(),
		PeakInFlight: r.PeakInFlight, InFlightCap: r.InFlightCap,
	}
}

// drawBar moves bar to p's count of rows done (of max m), then sets the
// outcomes beside it. Each redraws the bar (at most every 200 ms), so the
// count goes first and is read after the outcomes (a row is counted done
// before its outcome): of the rows this run sends, no frame shows more ok
// than done, as "ok 196 (194/200)" did when the outcomes were drawn
// beside the count of the tick before.
func drawBar(bar *progressbar.ProgressBar, p *batch.Progress, m int64) {
	ok, failed, unsure := p.Success.Load(), p.Failed.Load(), p.Unsure.Load()
	_ = bar.Set64(min(p.Done.Load(), m))
	bar.Describe(fmt.Sprintf("ok %d  failed %d  unsure %d", ok, failed, unsure))
}

// progressArgs are a progress line's attributes: p's counts, d rows done
// and the rows done per second since the line before (when last were
// done, interval ago). Counts and the rate are numbers, in --log-format
// json too.
func progressArgs(p *batch.Progress, d, last int64, interval, elapsed time.Duration) []any {
	return []any{"done", d, "of", p.Todo.Load(), "rows_per_s", math.Round(float64(d-last)/interval.Seconds()*10) / 10,
		"success", p.Success.Load(), "failed", p.Failed.Load(), "unsure", p.Unsure.Load(),
		"enquiries", p.Enquired.Load(), "in_flight", p.InFlight.Load(), "in_flight_limit", p.Limit.Load(),
		"elapsed", elapsed.Round(time.Second).String()}
}

// showProgress draws a bar on a terminal, or logs a line every few seconds
// when stderr is not one (cron). The returned func stops it.
func showProgress(ctx context.Context, mode string, stderr io.Writer, eng *batch.Engine, log *slog.Logger) func() {
	tty := false
	if f, ok := stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	if mode == "never" {
		return func() {}
	}
	p := eng.Progress()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	if mode == "always" || tty && mode != "lines" {
		newBar := func(max int64) *progressbar.ProgressBar {
			return progressbar.NewOptions64(max,
				progressbar.OptionSetWriter(stderr),
				progressbar.OptionSetDescription("sending"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("rows"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(200*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
		go func() {
			defer wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			// A bar made with max 0 counts as finished and never draws:
			// make it once the engine has counted the rows to send.
			var bar *progressbar.ProgressBar
			for {
				if m := p.Todo.Load(); m > 0 {
					if bar == nil {
						bar = newBar(m)
					} else if m != bar.GetMax64() {
						bar.ChangeMax64(m)
					}
					drawBar(bar, p, m)
				}
				select {
				case <-done:
					if bar != nil {
						_ = bar.Finish()
					}
					return
				case <-t.C:
				}
			}
		}()
	} else {
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			start, last := time.Now(), int64(0)
			lastAt := start
			for {
				select {
				case <-done:
					return
				case now := <-t.C:
					// The rate over the time since the line before, not
					// the tick's: a process paused (SIGSTOP, a suspended
					// VM) for 30 s ticks once on waking, and its rows of
					// 30 s read as done in 5.
					d := p.Done.Load()
					log.Info("progress", progressArgs(p, d, last, now.Sub(lastAt), now.Sub(start))...)
					last, lastAt = d, now
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
