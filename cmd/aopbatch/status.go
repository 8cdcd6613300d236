package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var batchID, format string
	fs := newFlagSet("status", "status [--ledger FILE] [--batch ID] [--format text|json]",
		"aopbatch status --ledger nightly.db --batch latest --format json", stderr)
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "one batch's counts (an id, or latest); omitted: list the batches")
	fs.StringVar(&format, "format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	noteLedger(textLog(stderr), *ledgerPath, false)
	if format != "text" && format != "json" {
		return start(fmt.Errorf("--format must be text or json, not %q", format))
	}
	l, err := openLedgerFile(ctx, *ledgerPath)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	var bs []ledger.Batch
	if batchID != "" {
		b, err := l.Batch(ctx, batchID)
		if err != nil {
			return start(err)
		}
		bs = []ledger.Batch{b}
	} else if bs, err = l.Batches(ctx); err != nil {
		return start(err)
	}
	type stateJSON struct {
		Rows  int64 `json:"rows"`
		Paise int64 `json:"amount_paise"`
	}
	type batchJSON struct {
		Batch      string               `json:"batch"`
		Source     string               `json:"source"`
		Created    string               `json:"created"`
		AgeSeconds int64                `json:"age_seconds"`
		Ready      bool                 `json:"ready"`
		Total      int64                `json:"total"`
		Paise      int64                `json:"amount_paise"`
		States     map[string]stateJSON `json:"states"`
		ExitCode   int                  `json:"exit_code"`
		Archived   string               `json:"archived,omitempty"`
		// Running: processes working on the batch now; its counts are
		// changing while there are any.
		Running []runnerJSON `json:"running,omitempty"`
	}
	now := time.Now()
	var out []batchJSON
	var counts []ledger.Counts // counting walks a batch's index: once per batch
	var runners [][]ledger.Runner
	for _, b := range bs {
		c, err := l.Counts(ctx, b.Seq)
		if err != nil {
			return start(err)
		}
		counts = append(counts, c)
		rs, err := changing(ctx, l, b, c)
		if err != nil {
			return start(err)
		}
		runners = append(runners, rs)
		bj := batchJSON{Batch: b.ID, Source: b.Source, Created: b.Created.UTC().Format(time.RFC3339), Archived: b.Archived,
			AgeSeconds: int64(now.Sub(b.Created).Seconds()), Ready: b.Ready,
			Total: c.Total().Rows, Paise: c.Total().Paise, States: map[string]stateJSON{}, ExitCode: outcome(c)}
		for _, s := range ledger.States {
			bj.States[string(s)] = stateJSON{Rows: c[s].Rows, Paise: c[s].Paise}
		}
		bj.Running = runnersJSON(rs)
		out = append(out, bj)
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if batchID != "" {
			return enc.Encode(out[0])
		}
		if out == nil {
			out = []batchJSON{}
		}
		return enc.Encode(out)
	}
	if batchID != "" {
		warnIncomplete(ctx, stderr, l, bs[0])
		if rs := runners[0]; len(rs) > 0 {
			fmt.Fprintf(stderr, "aopbatch: a run is working on batch %s now (%s): these counts are changing\n", bs[0].ID, ledger.RunnersText(rs))
		}
		return writeCounts(stdout, bs[0], counts[0])
	}
	if len(bs) == 0 {
		fmt.Fprintf(stdout, "ledger %s holds no batches\n", ledgerName(l))
		return nil
	}
	// A batch's share of the file, estimated from its share of the rows
	// (each row and its attempts take about the same room): what keeping
	// it costs, and what archiving it would free.
	size, allRows := int64(0), int64(0)
	if sz, ok := l.(interface {
		Size(context.Context) (int64, error)
	}); ok {
		size, _ = sz.Size(ctx)
	}
	for _, bj := range out {
		allRows += bj.Total
	}
	fmt.Fprintf(stdout, "ledger %s (%s): %d %s, %d rows\n", ledgerName(l), humanBytes(size), len(out), plural(len(out), "batch", "batches"), allRows)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	// The four counts add up to rows: paid, not paid, not known yet, never
	// to be sent as they are.
	fmt.Fprintln(tw, "batch\tfile\tcreated\tage\trows\tamount (Rs)\tsize (est.)\tsuccess\tfailed+refunded\tunsettled\trejected+conflict\tamount sent ok (Rs)")
	for i, bj := range out {
		unsettled := counts[i].Unsettled().Rows
		est := int64(0)
		if allRows > 0 {
			est = size * bj.Total / allRows
		}
		id := bj.Batch
		if bj.Archived != "" {
			id += " (archived)"
		}
		if !bj.Ready {
			id += " (recording incomplete)"
		}
		if len(bj.Running) > 0 {
			id += " (running)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t~%s\t%d\t%d\t%d\t%d\t%s\n", id, bj.Source, bj.Created, age(time.Duration(bj.AgeSeconds)*time.Second),
			bj.Total, batch.FormatRupees(bj.Paise), humanBytes(est),
			bj.States["success"].Rows, bj.States["failed"].Rows+bj.States["refunded"].Rows, unsettled,
			bj.States["rejected"].Rows+bj.States["conflict"].Rows,
			batch.FormatRupees(bj.States["success"].Paise))
	}
	return tw.Flush()
}

// runnerJSON is a process running a batch, in status --format json and
// the run summary.
type runnerJSON struct {
	Host       string `json:"host"`
	PID        int    `json:"pid"`
	LeaseUntil string `json:"lease_until"`
}

// runnersJSON is rs for JSON output; nil for none.
func runnersJSON(rs []ledger.Runner) []runnerJSON {
	var out []runnerJSON
	for _, r := range rs {
		out = append(out, runnerJSON{Host: r.Host, PID: r.PID, LeaseUntil: r.Until.UTC().Format(time.RFC3339)})
	}
	return out
}

// age renders how old a batch is the way a person reads it: "45m", "7h",
// "3d4h", "12d".
func age(d time.Duration) string {
	switch {
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	case d < 10*24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
	return fmt.Sprintf("%dd", int(d.Hours())/24)
}

// humanBytes renders a size in B, KB, MB or GB (powers of 1024).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "KMGT"[exp])
}

// plural picks the word for n things.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
