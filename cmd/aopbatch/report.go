package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/reports"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		batchID, statement, columns, format, out, metrics, tz string
		maskPII                                               bool
	)
	fs := newFlagSet("report",
		"report [--ledger FILE] [--batch ID|latest] [--statement FILE [--statement-columns MAP]] [--format md,csv,json,html,xlsx] [--out DIR] [--tz ZONE] [--mask-pii] [--metrics-file FILE]",
		"aopbatch report --ledger nightly.db --batch latest --statement provider-2025-03-01.csv --statement-columns refid=Reference,amount=Amt --out reports/2025-03-01 --metrics-file /var/lib/node_exporter/textfile/aopbatch.prom", stderr)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(stderr, `
Writes report.json, rows.csv, rejects.csv, summary.md, report.html and
report.xlsx (and reconciliation.csv with --statement) into --out, created
if needed.
The statement is a CSV with columns refid, txnid, amount, status, refunded,
operatorid, dateadded (as the status enquiry names them); name the provider's
own headers with --statement-columns ours=Theirs,... when they differ.
Exit codes: 0 reports written; 2 written, but the ledger and the statement
disagree (see reconciliation.csv); 1 usage, ledger or statement error.
`)
	}
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "batch id, or latest; may be omitted when the ledger holds one batch")
	fs.StringVar(&statement, "statement", "", "provider statement CSV to reconcile the ledger against")
	fs.StringVar(&columns, "statement-columns", "", "statement headers, ours=theirs pairs, e.g. refid=Reference,amount=Amt")
	fs.StringVar(&format, "format", strings.Join(reports.Formats, ","), "formats to write: "+strings.Join(reports.Formats, ", "))
	fs.StringVar(&tz, "tz", "", "time zone the reports show times in, e.g. Asia/Kolkata (default: the machine's)")
	fs.StringVar(&out, "out", "", "directory for the reports (default reports-BATCH)")
	fs.BoolVar(&maskPII, "mask-pii", false, "mask canumber, cellNumber and userName (keep the last 4 characters)")
	fs.StringVar(&metrics, "metrics-file", "", "also write the figures in Prometheus text format to this file (for node_exporter's textfile collector)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	noteLedger(textLog(stderr), *ledgerPath, false)
	formats, err := reports.ParseFormats(format)
	if err != nil {
		return start(fmt.Errorf("--format: %w", err))
	}
	loc, err := parseTZ(tz)
	if err != nil {
		return start(err)
	}
	cols, err := reports.ParseStatementColumns(columns)
	if err != nil {
		return start(fmt.Errorf("--statement-columns: %w", err))
	}
	if columns != "" && statement == "" {
		return start(errors.New("--statement-columns needs --statement"))
	}
	l, b, err := openExisting(ctx, *ledgerPath, batchID)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	warnIncomplete(ctx, stderr, l, b)
	// Read the statement first: a bad one fails before anything is written.
	var st *reports.Statement
	if statement != "" {
		if st, err = reports.ReadStatementFile(statement, cols); err != nil {
			return start(err)
		}
	}
	s, err := reports.Build(ctx, l, b, reports.Options{MaskPII: maskPII, Location: loc})
	if err != nil {
		return start(err)
	}
	if st != nil {
		if err := s.Reconcile(ctx, l, st); err != nil {
			return start(err)
		}
	}
	if out == "" {
		out = "reports-" + safeName(b.ID)
	}
	paths, err := reports.Write(ctx, l, out, s, formats)
	if err != nil {
		return start(err)
	}
	if metrics != "" {
		if err := reports.WriteMetrics(metrics, s); err != nil {
			return start(err)
		}
		paths = append(paths, metrics)
	}
	fmt.Fprint(stdout, s.TextSummary())
	printWritten(stdout, out, paths)
	if s.Mismatched() {
		return &exitError{code: exitFinishedNo, err: fmt.Errorf("the ledger and the statement disagree: see %s", filepath.Join(out, reports.FileReconciliation))}
	}
	return nil
}

// parseTZ reads a --tz value: an IANA zone name; empty is the machine's.
func parseTZ(tz string) (*time.Location, error) {
	if tz == "" {
		return nil, nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("--tz %q is not a time zone name such as Asia/Kolkata or UTC", tz)
	}
	return loc, nil
}

// writeReports writes every report format of batch b into dir, for run and
// resolve's --report, and prints a short summary.
// endReports are the report outputs run and resolve write when they end.
type endReports struct {
	dir     string
	maskPII bool
	metrics string
	tz      string
	run     *batch.RunStats // what the run measured, for the metrics file; nil for none
	// exitCode is the run's exit code, given whether its reports were
	// written (repErr), for the metrics file.
	exitCode func(repErr error) int
	// takenOver: the run stopped because another process took the batch
	// over, for the metrics file.
	takenOver bool
	// stopReason is why the run stopped sending (batch.StopError's
	// Reason), "" when it did not stop.
	stopReason string
}

func (r *endReports) register(fs *flag.FlagSet) {
	fs.StringVar(&r.dir, "report", "", "write the reports into this directory at the end")
	fs.BoolVar(&r.maskPII, "mask-pii", false, "mask canumber, cellNumber and userName in the reports")
	fs.StringVar(&r.tz, "tz", "", "time zone the reports show times in, e.g. Asia/Kolkata (default: the machine's)")
	fs.StringVar(&r.metrics, "metrics-file", "", "write the batch's figures in the Prometheus text format (for node_exporter's textfile collector)")
}

func (r endReports) wanted() bool { return r.dir != "" || r.metrics != "" }

// check refuses, before anything is sent, outputs that could only fail
// once the money has moved: a --tz that names no zone, a --report that
// cannot be created or written, a --metrics-file whose directory is
// missing or not writable. A run that found out at its end would have
// paid the file and then exited 3 on every rerun until someone fixed the
// flag. Nothing is created here.
func (r endReports) check() error {
	if _, err := parseTZ(r.tz); err != nil {
		return err
	}
	if r.dir != "" {
		if err := checkWritableDir(r.dir, true); err != nil {
			return fmt.Errorf("--report %s: %w; nothing was sent", r.dir, err)
		}
	}
	if r.metrics != "" {
		if fi, err := os.Stat(r.metrics); err == nil && fi.IsDir() {
			return fmt.Errorf("--metrics-file %s: is a directory: name a file in it, e.g. %s; nothing was sent", r.metrics, filepath.Join(r.metrics, "aopbatch.prom"))
		}
		if err := checkWritableDir(filepath.Dir(r.metrics), false); err != nil {
			return fmt.Errorf("--metrics-file %s: %w; nothing was sent", r.metrics, err)
		}
	}
	return nil
}

// checkWritableDir says whether files can be written in dir: it must be a
// directory aopbatch can create a file in or, when create is set and it
// does not exist yet, the nearest directory above it that does must be.
// Writing is tried (a temporary file, removed at once): permissions, a
// read-only mount and ACLs all answer the same way.
func checkWritableDir(dir string, create bool) error {
	probe := dir
	for {
		fi, err := os.Stat(probe)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", probe)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) || !create {
			return err
		}
		up := filepath.Dir(probe)
		if up == probe {
			return err
		}
		probe = up
	}
	f, err := os.CreateTemp(probe, ".aopbatch-check-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said already
		}
		return fmt.Errorf("cannot write in %s: %w", probe, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// write writes what r asks for about batch b.
func (r endReports) write(ctx context.Context, l ledger.Store, b ledger.Batch, stdout io.Writer) error {
	if !r.wanted() {
		return nil
	}
	loc, err := parseTZ(r.tz)
	if err != nil {
		return err
	}
	s, err := reports.Build(ctx, l, b, reports.Options{MaskPII: r.maskPII, Location: loc})
	if err != nil {
		return err
	}
	var dirErr error
	if r.dir != "" {
		paths, err := reports.Write(ctx, l, r.dir, s, nil)
		if err == nil {
			fmt.Fprint(stdout, s.TextSummary())
			printWritten(stdout, r.dir, paths)
		}
		dirErr = err
	}
	if r.metrics != "" {
		// Written even when the reports could not be: the file a run
		// before left would stay, saying how that run ended.
		write := func() error { return reports.WriteMetrics(r.metrics, s) }
		if r.run != nil {
			f := runFigures(*r.run)
			f.ExitCode, f.TakenOver, f.StopReason = r.exitCode(dirErr), r.takenOver, r.stopReason
			write = func() error { return reports.WriteMetricsWithRun(r.metrics, s, f) }
		}
		if err := write(); err != nil {
			return errors.Join(dirErr, err)
		}
	}
	return dirErr
}

func printWritten(w io.Writer, dir string, paths []string) {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = p
		if filepath.Dir(p) == filepath.Clean(dir) {
			names[i] = filepath.Base(p)
		}
	}
	fmt.Fprintf(w, "reports in %s: %s\n", dir, strings.Join(names, ", "))
}

// openExisting opens a ledger that must already exist and picks the batch.
func openExisting(ctx context.Context, path, batchID string) (ledger.Store, ledger.Batch, error) {
	l, err := openLedgerFile(ctx, path)
	if err != nil {
		return nil, ledger.Batch{}, err
	}
	b, err := l.Batch(ctx, batchID)
	if err != nil {
		l.Close()
		return nil, ledger.Batch{}, err
	}
	if b.Archived != "" {
		// What is left of it here is its rows' states and amounts, not
		// the batch: reports and exports come from the archive.
		l.Close()
		return nil, ledger.Batch{}, fmt.Errorf("batch %s was archived to %s: read it there, e.g. aopbatch report --ledger %s --batch %s",
			b.ID, b.Archived, b.Archived, b.ID)
	}
	return l, b, nil
}

// warnIncomplete says so when batch b's file was not wholly recorded (a
// run killed while recording it) or the batch not wholly copied in (a
// ledger copy cut short): its counts and totals are of part of it. The
// same run command records the rest, the same copy copies it whole.
func warnIncomplete(ctx context.Context, w io.Writer, l ledger.Reader, b ledger.Batch) {
	if b.Ready {
		return
	}
	if c, err := l.Counts(ctx, b.Seq); err == nil && c.Sent() {
		fmt.Fprintf(w, "aopbatch: batch %s was not wholly copied in (a ledger copy stopped part way): its counts are of part of it; run the same aopbatch ledger copy again to finish it\n", b.ID)
		return
	}
	fmt.Fprintf(w, "aopbatch: batch %s was not wholly recorded (a run stopped while recording %s): its counts are of part of the file; run the file again with aopbatch run to record the rest\n",
		b.ID, b.Source)
}

// changing returns the processes working on batch b (counts c) that may
// still change its rows: none once every row is final, when one that
// still holds it (a process of a shared ledger writing its own report)
// changes nothing.
func changing(ctx context.Context, l ledger.Reader, b ledger.Batch, c ledger.Counts) ([]ledger.Runner, error) {
	if b.Ready && c.Unsettled().Rows == 0 {
		return nil, nil
	}
	return l.Runners(ctx, b.Seq)
}

// safeName makes a batch id usable as one path element.
func safeName(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == ':' {
			return '_'
		}
		return r
	}, id)
}
