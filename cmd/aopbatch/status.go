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
		Batch    string               `json:"batch"`
		Source   string               `json:"source"`
		Created  string               `json:"created"`
		Ready    bool                 `json:"ready"`
		Total    int64                `json:"total"`
		States   map[string]stateJSON `json:"states"`
		ExitCode int                  `json:"exit_code"`
	}
	var out []batchJSON
	var counts []ledger.Counts // counting walks a batch's index: once per batch
	for _, b := range bs {
		c, err := l.Counts(ctx, b.Seq)
		if err != nil {
			return start(err)
		}
		counts = append(counts, c)
		bj := batchJSON{Batch: b.ID, Source: b.Source, Created: b.Created.UTC().Format(time.RFC3339), Ready: b.Ready,
			Total: c.Total().Rows, States: map[string]stateJSON{}, ExitCode: outcome(c)}
		for _, s := range ledger.States {
			bj.States[string(s)] = stateJSON{Rows: c[s].Rows, Paise: c[s].Paise}
		}
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
		return writeCounts(stdout, bs[0], counts[0])
	}
	if len(bs) == 0 {
		fmt.Fprintf(stdout, "ledger %s holds no batches\n", l.Location())
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "batch\tfile\tcreated\trows\tsuccess\tfailed\tunsettled\tamount sent ok (Rs)")
	for _, bj := range out {
		unsettled := int64(0)
		for s, v := range bj.States {
			if !ledger.State(s).Final() {
				unsettled += v.Rows
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", bj.Batch, bj.Source, bj.Created, bj.Total,
			bj.States["success"].Rows, bj.States["failed"].Rows+bj.States["refunded"].Rows, unsettled,
			batch.FormatRupees(bj.States["success"].Paise))
	}
	return tw.Flush()
}
