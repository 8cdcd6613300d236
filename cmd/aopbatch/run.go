package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
)

type runFlags struct {
	csv, ledger, batchID string
	conn                 connFlags
	logs                 logFlags
	allowExtra           bool
	generateRefs         bool
	latitude, longitude  string
	expectRows           int64
	expectTotal          string
	maxTotal             string
	maxAmount            string
	maxRejectRate        float64
	dryRun               bool
	payAgain             bool
	progress             string
	reports              endReports
	leaseTTL             time.Duration
	synchronous          string
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := newFlagSet("run", "run --csv FILE [--ledger FILE] [--batch ID] [flags]",
		"AOP_TOKEN=... aopbatch run --csv recharges.csv --base-url https://api.example.in --auth bearer --registration-id AOP-554 --rate 20 --report out/", stderr)
	fs.StringVar(&f.csv, "csv", "", "input CSV file (required)")
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&f.batchID, "batch", "", "batch id (default: derived from the file's content, so a rerun resumes)")
	f.conn.register(fs)
	f.logs.register(fs)
	fs.BoolVar(&f.allowExtra, "allow-extra-columns", false, "ignore columns aopbatch does not know instead of refusing the file")
	fs.BoolVar(&f.generateRefs, "generate-refs", false, "derive a stable referenceid from the batch and line for rows without one (needs --batch)")
	fs.BoolVar(&f.payAgain, "pay-again", false, "with --generate-refs: send a file whose exact content is already a batch as new payments")
	fs.StringVar(&f.latitude, "latitude", "", "latitude for rows without one")
	fs.StringVar(&f.longitude, "longitude", "", "longitude for rows without one")
	fs.Int64Var(&f.expectRows, "expect-rows", -1, "refuse the file unless it has exactly this many data rows")
	fs.StringVar(&f.expectTotal, "expect-total", "", "refuse the file unless the rows to send total exactly these rupees")
	fs.StringVar(&f.maxTotal, "max-total", "", "refuse the file if the rows to send total more than these rupees")
	fs.StringVar(&f.maxAmount, "max-amount", "", "refuse the file if any row is above these rupees")
	fs.Float64Var(&f.maxRejectRate, "max-reject-rate", 0.2, "refuse the file if more than this share of rows is invalid (1 = never)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "validate and record the file, send nothing")
	fs.StringVar(&f.progress, "progress", "auto", "progress display: auto (a bar on a terminal, log lines otherwise), always, never")
	f.reports.register(fs)
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second, "how long the batch lock outlives a run that died on another host")
	fs.StringVar(&f.synchronous, "synchronous", "FULL", "ledger durability: FULL (survives power loss) or NORMAL (survives a crash)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f.ledger = *ledgerPath
	return f.run(ctx, stdout, stderr)
}

func (f *runFlags) controls() (batch.Controls, error) {
	c := batch.NoControls()
	if f.expectRows < -1 { // -1: the default, no check
		return c, fmt.Errorf("--expect-rows must be 0 or more, not %d", f.expectRows)
	}
	if math.IsNaN(f.maxRejectRate) || f.maxRejectRate < 0 || f.maxRejectRate > 1 {
		return c, fmt.Errorf("--max-reject-rate must be between 0 and 1, not %v", f.maxRejectRate)
	}
	c.ExpectRows = f.expectRows
	c.MaxRejectRate = f.maxRejectRate
	for _, m := range []struct {
		name, v string
		dst     *int64
	}{{"--expect-total", f.expectTotal, &c.ExpectTotalPaise}, {"--max-total", f.maxTotal, &c.MaxTotalPaise}, {"--max-amount", f.maxAmount, &c.MaxAmountPaise}} {
		if m.v == "" {
			continue
		}
		p, err := batch.ParseRupees(m.v)
		if err != nil {
			return c, fmt.Errorf("%s %q: %w", m.name, m.v, err)
		}
		*m.dst = p
	}
	return c, nil
}

func start(err error) error { return &exitError{code: exitStart, err: err} }

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *runFlags) run(ctx context.Context, stdout, stderr io.Writer) error {
	if f.csv == "" {
		return start(errors.New("run: --csv FILE is required (see aopbatch run -h)"))
	}
	if f.batchID == "latest" {
		// Elsewhere "latest" names the newest batch; as a new batch's id it
		// would be shadowed by that meaning for good.
		return start(errors.New(`run: --batch latest is reserved (it names the newest batch in status, report and resolve): omit --batch to resume this file's batch, or pick another id`))
	}
	log, err := f.logs.logger(stderr)
	if err != nil {
		return start(err)
	}
	controls, err := f.controls()
	if err != nil {
		return start(err)
	}
	if err := checkSession(f.progress, f.leaseTTL); err != nil {
		return start(err)
	}
	if !f.dryRun {
		if err := f.conn.check(); err != nil {
			return start(err)
		}
	}
	cfg, err := f.conn.engineConfig(log)
	if err != nil {
		return start(err)
	}
	if _, err := os.Stat(f.csv); err != nil {
		return start(fmt.Errorf("input: %w", err))
	}
	var client batch.Provider
	if !f.dryRun {
		c, err := f.conn.client()
		if err != nil {
			return start(err)
		}
		client = c
	}
	l, err := ledger.Open(ctx, f.ledger, ledger.Options{Synchronous: f.synchronous})
	if err != nil {
		return start(err)
	}
	defer l.Close()

	owner := ledger.NewOwner(newRunID())
	ing, err := batch.Ingest(ctx, l, f.csv, batch.IngestOptions{
		Reader: batch.ReaderOptions{AllowExtraColumns: f.allowExtra, GenerateRefs: f.generateRefs,
			Latitude: f.latitude, Longitude: f.longitude, RegistrationID: f.conn.registrationID},
		BatchID: f.batchID, Controls: controls, Owner: owner, LeaseTTL: f.leaseTTL, PayAgain: f.payAgain,
	})
	if err != nil {
		switch {
		case errors.Is(err, batch.ErrGenerateRefsNeedsBatch):
			return start(fmt.Errorf("run: --generate-refs needs --batch ID, e.g. --batch payouts-2026-11-26: %w", err))
		case f.generateRefs && errors.Is(err, ledger.ErrBatchMismatch):
			return start(generatedMismatch(ctx, l, f.batchID, err))
		}
		return start(describeStartError(f.csv, err))
	}
	b := ing.Batch
	release := func() { _ = l.Release(context.WithoutCancel(ctx), b.ID, owner) }
	defer release()
	if ing.Resumed {
		log.Info("resuming batch", "batch", b.ID, "file", f.csv, "rows", b.RowsTotal)
	} else {
		log.Info("file recorded", "batch", b.ID, "file", f.csv, "rows", ing.Rows, "to_send", ing.Queued,
			"amount", batch.FormatRupees(ing.Paise), "rejected", ing.Rejected, "conflict", ing.Conflicts)
		if ing.Rejected+ing.Conflicts > 0 {
			printProblems(ctx, l, b, stderr, 10, ing.Rejected+ing.Conflicts)
		}
	}
	if f.dryRun {
		fmt.Fprintf(stdout, "dry run: batch %s recorded, nothing sent\n", b.ID)
		if err := printCounts(ctx, l, b, stdout); err != nil {
			return start(err)
		}
		// The reports of a dry run show what would be sent: asked for, they
		// are written, or the exit says they were not.
		if err := f.reports.write(context.WithoutCancel(ctx), l, b, stdout); err != nil {
			fmt.Fprintln(stderr, "aopbatch: reports:", err)
			return &exitError{code: exitIncomplete, err: errors.New("the dry run's reports were not written (see above)")}
		}
		if ing.Rejected+ing.Conflicts > 0 {
			return &exitError{code: exitFinishedNo}
		}
		return nil
	}

	cfg.Owner = owner
	eng := batch.New(l, client, cfg)
	hb := heartbeat(ctx, l, b, owner, f.leaseTTL, eng, log)
	defer hb()
	if err := eng.Prepare(ctx, b); err != nil {
		return start(err)
	}
	stopProgress := showProgress(ctx, f.progress, stderr, eng, log)
	sendErr := eng.Send(ctx, b)
	if sendErr == nil && ctx.Err() == nil {
		sendErr = eng.Resolve(ctx, b)
	}
	stopProgress()
	st := eng.Stats()
	return finish(ctx, l, b, sendErr, f.reports, f.logs.format, &st, stdout, stderr)
}

// finish prints the batch's state and, when run is not nil, what the run
// measured, writes reports and picks the exit code.
func finish(ctx context.Context, l *ledger.Ledger, b ledger.Batch, runErr error, rep endReports, logFormat string, run *batch.RunStats, stdout, stderr io.Writer) error {
	bg := context.WithoutCancel(ctx)
	counts, err := l.Counts(bg, b.Seq)
	if err != nil {
		return &exitError{code: exitIncomplete, err: err}
	}
	if err := writeCounts(stdout, b, counts); err != nil {
		return &exitError{code: exitIncomplete, err: err}
	}
	if run != nil {
		fmt.Fprintln(stdout, run.String())
	}
	rep.run = run
	repErr := rep.write(bg, l, b, stdout)
	if repErr != nil {
		fmt.Fprintln(stderr, "aopbatch: reports:", repErr)
	}
	code := outcome(counts)
	if logFormat == "json" {
		printJSONSummary(stdout, b, counts, code, run)
	}
	var stop *batch.StopError
	switch {
	case errors.As(runErr, &stop):
		return &exitError{code: exitIncomplete, err: runErr}
	case runErr != nil:
		return &exitError{code: exitIncomplete, err: runErr}
	case ctx.Err() != nil:
		return &exitError{code: exitIncomplete, err: errors.New("interrupted: run the same command again to resume")}
	case repErr != nil:
		// Rows are settled but what cron was told to leave behind is not:
		// never exit 0 (or 2) without it. A rerun sends nothing more.
		return &exitError{code: exitIncomplete, err: errors.New("the run finished but its reports were not written (see above): run the same command again, which sends nothing more, or use aopbatch report")}
	}
	switch code {
	case exitIncomplete:
		return &exitError{code: code, err: errors.New("some rows are not settled yet: run again later (or aopbatch resolve) to finish them")}
	case exitFinishedNo:
		return &exitError{code: code}
	}
	return nil
}

// outcome is the exit code a batch's counts call for.
func outcome(c ledger.Counts) int {
	total := c.Total().Rows
	unsettled := int64(0)
	for s, t := range c {
		if !s.Final() {
			unsettled += t.Rows
		}
	}
	switch {
	case unsettled > 0:
		return exitIncomplete
	case c[ledger.StateSuccess].Rows == total:
		return exitOK
	}
	return exitFinishedNo
}

// heartbeat renews the batch lease until the returned func is called; if the
// lease is lost the engine stops, since another process may be sending. The
// engine learns until when each renewal holds: a process paused past it
// sends nothing more once it resumes.
func heartbeat(ctx context.Context, l *ledger.Ledger, b ledger.Batch, o ledger.Owner, ttl time.Duration, eng *batch.Engine, log *slog.Logger) func() {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	renewOnce := func() (time.Time, error) {
		at := time.Now() // before the write: the lease it sets ends no sooner
		err := l.Renew(context.WithoutCancel(ctx), b.ID, o, ttl)
		return at.Add(ttl), err
	}
	// Acquire (or the ingest) set the lease a while ago: the engine sends
	// nothing until a renewal made here holds.
	eng.UseLease(renewOnce)
	renew := func() bool {
		until, err := renewOnce()
		switch {
		case err == nil:
			eng.SetLease(until)
		case errors.Is(err, ledger.ErrLeaseLost):
			eng.Stop(&batch.StopError{Reason: "lease", Detail: err.Error(), Hint: "another aopbatch took over this batch"})
			return false
		case hctx.Err() == nil:
			log.Warn("renew batch lease", "err", err)
		}
		return true
	}
	if !renew() {
		cancel()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if !renew() {
					return
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// generatedMismatch explains a file refused under a batch id made from
// other content, when referenceids are generated: a corrected copy run
// whole under a new id would pay again the rows that batch already sent.
func generatedMismatch(ctx context.Context, l *ledger.Ledger, id string, err error) error {
	sent := int64(-1) // unknown
	if b, berr := l.Batch(ctx, id); berr == nil {
		if c, cerr := l.Counts(ctx, b.Seq); cerr == nil {
			sent = 0
			for s, t := range c {
				switch s {
				case ledger.StateQueued, ledger.StateHeld, ledger.StateRejected, ledger.StateConflict:
				default:
					sent += t.Rows
				}
			}
		}
	}
	if sent == 0 {
		return fmt.Errorf("%w. Nothing of batch %s was sent (a dry run?): run this file under a new --batch id", err, id)
	}
	return fmt.Errorf("%w. If this is a corrected or re-saved copy, do not run it whole under a new --batch id: "+
		"its rows would get new referenceids and the rows already paid would be paid again. "+
		"Put only the rows still to pay in a file (rejects.csv holds the rejected ones) and run that under a new --batch id", err)
}

// describeStartError turns the errors that stop a run before sending into
// one clear line with a hint.
func describeStartError(file string, err error) error {
	var fe *batch.FileError
	var ce *batch.ControlError
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted while reading the file: nothing was recorded or sent")
	case errors.As(err, &fe):
		return fmt.Errorf("%s: %w; nothing was sent", file, err)
	case errors.As(err, &ce):
		return fmt.Errorf("%s: %w; nothing was sent", file, err)
	case errors.Is(err, ledger.ErrBatchLocked):
		return fmt.Errorf("%w: wait for it to finish (or for its lock to expire if it died on another machine)", err)
	case errors.Is(err, ledger.ErrBatchMismatch):
		return fmt.Errorf("%w: pick another --batch id, or omit --batch to derive one from the file", err)
	}
	return err
}
