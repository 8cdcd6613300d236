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
	"strings"
	"syscall"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
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
	allowKnownRefs       bool
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
	fs.BoolVar(&f.allowKnownRefs, "allow-known-refs", false, "keep sending when the provider answers 18 (it already holds the referenceid) to most first sends: for a file whose ledger was lost")
	fs.StringVar(&f.latitude, "latitude", os.Getenv("AOP_LATITUDE"), "latitude for rows without one (env AOP_LATITUDE); every request carries one")
	fs.StringVar(&f.longitude, "longitude", os.Getenv("AOP_LONGITUDE"), "longitude for rows without one (env AOP_LONGITUDE)")
	fs.Int64Var(&f.expectRows, "expect-rows", -1, "refuse the file unless it has exactly this many data rows")
	fs.StringVar(&f.expectTotal, "expect-total", "", "refuse the file unless the rows to send total exactly these rupees")
	fs.StringVar(&f.maxTotal, "max-total", "", "refuse the file if the rows to send total more than these rupees")
	fs.StringVar(&f.maxAmount, "max-amount", "", "refuse the file if any row is above these rupees")
	fs.Float64Var(&f.maxRejectRate, "max-reject-rate", 0.2, "refuse the file if more than this share of rows is invalid (1 = never)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "validate and record the file, send nothing (exit 0, or 2 when rows were rejected or in conflict)")
	fs.StringVar(&f.progress, "progress", "auto", "progress display: auto (a bar on a terminal, log lines otherwise), always, never")
	f.reports.register(fs)
	fs.DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second, "how long the batch lock outlives a run that died on another host")
	fs.StringVar(&f.synchronous, "synchronous", "FULL", "ledger durability: FULL (survives power loss) or NORMAL (survives a crash)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f.ledger = *ledgerPath
	if !f.logs.json() {
		return f.logs.run(stderr, func(log *slog.Logger) error { return f.run(ctx, log, stdout, stderr) })
	}
	// With JSON logs stdout's one line is the run summary, whatever the
	// end: a run that could not start, or a second signal, writes one too.
	out := &summaryOut{w: stdout}
	bye := func() int {
		return out.bare(exitIncomplete, "second signal: exited at once; run again to resume (rows in flight are checked with the provider first)")
	}
	lastWords.Store(&bye)
	defer lastWords.Store(nil)
	return f.logs.run(stderr, func(log *slog.Logger) error {
		err := f.run(ctx, log, out, stderr)
		if err != nil {
			_ = out.bare(codeOf(err), errText(err))
		}
		return err
	})
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

// prepareError is the exit of a run that failed to take over the rows in
// flight before sending anything. A lease lost meanwhile means this
// process was paused (or cut off) past it and another took the batch
// over: nothing went, and running again goes on, so 3 rather than 1,
// which a timer reads as a broken setup.
func prepareError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrLeaseLost):
		return &exitError{code: exitIncomplete, err: fmt.Errorf("%w: this process stalled past --lease-ttl and another took the batch over before it sent anything; run again to go on", err)}
	case errors.Is(err, context.DeadlineExceeded):
		// The ledger stopped answering: not a setup to fix.
		return &exitError{code: exitIncomplete, err: fmt.Errorf("%w: the ledger did not answer in time; nothing was sent: run again once it does", err)}
	}
	return start(err)
}

// recordingError is the exit of a run whose recording of the file failed:
// 3 when the recording was cut by a stall or the database, where running
// again goes on, else 1.
func recordingError(csv, ledgerPath string, err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		// SIGINT/SIGTERM while the file was being recorded: interrupted
		// is 3 (SPEC 4), not a setup to fix; a batch an earlier run
		// began is as unfinished as it was.
		return &exitError{code: exitIncomplete, err: describeStartError(csv, err)}
	case errors.Is(err, ledger.ErrLeaseLost):
		// Paused past its lease while recording the file, and taken over
		// (its connection ended, or cut as it wrote): the other process
		// records it, and a run again joins that batch.
		return &exitError{code: exitIncomplete, err: fmt.Errorf("%w: this process stalled while recording the file; nothing was sent: run again", err)}
	case postgres.Abandoned(err):
		// Paused (or starved) in the middle of recording the file, or the
		// server shut down: the next run records it again.
		return &exitError{code: exitIncomplete, err: fmt.Errorf("%w: the database ended this process's session while it recorded the file (it stalled, or the server shut down); nothing was sent: run again", err)}
	case errors.Is(err, context.DeadlineExceeded):
		// A shared ledger's server that stopped answering (its calls are
		// bounded): not a setup to fix, as in prepareError.
		return &exitError{code: exitIncomplete, err: fmt.Errorf("%s: the ledger stopped answering while this run recorded the file (%w); this run sent nothing: run again once it answers", csv, err)}
	}
	d := describeStartError(csv, err)
	if d == err && !postgres.IsURL(ledgerPath) {
		// Nothing about the file or the batch: the ledger may have
		// refused the write (SQLite says only "database or disk is
		// full"). Name it and the cause, as a stop mid-run does.
		abs := absPath(ledgerPath)
		if why := ledgerWriteCause(abs); why != "" {
			d = fmt.Errorf("the ledger %s could not be written while this run recorded %s: %s (%w); nothing was sent: make room, then run the same command again", abs, csv, why, err)
		}
	}
	return start(d)
}

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *runFlags) run(ctx context.Context, log *slog.Logger, stdout, stderr io.Writer) error {
	if f.csv == "" {
		return start(errors.New("run: --csv FILE is required (see aopbatch run -h)"))
	}
	if f.batchID == "latest" {
		// Elsewhere "latest" names the newest batch; as a new batch's id it
		// would be shadowed by that meaning for good.
		return start(errors.New(`run: --batch latest is reserved (it names the newest batch in status, report and resolve): omit --batch to resume this file's batch, or pick another id`))
	}
	// The file first: it is what the person named, and the first thing
	// to fix when it is missing.
	if _, err := os.Stat(f.csv); err != nil {
		return start(fmt.Errorf("input: %w", err))
	}
	// Every setting is checked before the ledger is named or opened: a run
	// refused for one leaves no empty ledger behind (nor a log line calling
	// it new).
	connLog, release := holdLog(log)
	defer release()
	f.conn.log = connLog
	controls, err := f.controls()
	if err != nil {
		return start(err)
	}
	if err := checkSession(f.progress, f.leaseTTL); err != nil {
		return start(err)
	}
	if err := f.reports.check(); err != nil {
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
	cfg.AllowKnownRefs = f.allowKnownRefs
	var client batch.Provider
	if !f.dryRun {
		c, err := f.conn.client()
		if err != nil {
			return start(err)
		}
		client = c
	}
	lo := ledgerOptions{create: true, synchronous: f.synchronous, leaseTTL: f.leaseTTL}
	if err := lo.check(f.ledger); err != nil {
		return start(err)
	}
	if f.generateRefs && f.batchID == "" && !postgres.IsURL(f.ledger) {
		// Without --batch only a batch an earlier version made of this
		// file is taken, and a ledger not made yet has none.
		if _, err := os.Stat(f.ledger); errors.Is(err, os.ErrNotExist) {
			return start(fmt.Errorf("run: --generate-refs needs --batch ID, e.g. --batch payouts-2026-11-26: %w", batch.ErrGenerateRefsNeedsBatch))
		}
	}
	// The file's header against the settings: a RegistrationID or
	// coordinates it lacks and no flag gives.
	ro := batch.ReaderOptions{AllowExtraColumns: f.allowExtra, GenerateRefs: f.generateRefs,
		Latitude: f.latitude, Longitude: f.longitude, RegistrationID: f.conn.registrationID}
	if err := batch.CheckFile(f.csv, ro); err != nil {
		return start(describeStartError(f.csv, err))
	}
	noteLedger(log, f.ledger, true)
	release()
	l, err := openLedger(ctx, f.ledger, lo)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return recordingError(f.csv, f.ledger, err)
		}
		return start(err)
	}
	defer l.Close()
	opened := ledgerFileInfo(f.ledger)

	owner := ledger.NewOwner(newRunID())
	ing, err := batch.Ingest(ctx, l, f.csv, batch.IngestOptions{
		Reader:  ro,
		BatchID: f.batchID, Controls: controls, Owner: owner, LeaseTTL: f.leaseTTL, PayAgain: f.payAgain, Log: log,
	})
	if err != nil {
		switch {
		case errors.Is(err, batch.ErrGenerateRefsNeedsBatch):
			return start(fmt.Errorf("run: --generate-refs needs --batch ID, e.g. --batch payouts-2026-11-26: %w", err))
		case f.generateRefs && errors.Is(err, ledger.ErrBatchMismatch):
			return start(generatedMismatch(ctx, l, f.batchID, err))
		}
		return recordingError(f.csv, f.ledger, err)
	}
	b := ing.Batch
	// This process, in the words another's takeover line uses for it
	// ("pid 41 on hostA"): the operator matches that line to this log.
	self := ledger.RunnersText([]ledger.Runner{{Host: owner.Host, PID: owner.PID}})
	sess := batch.NewSession(l, b, owner, f.leaseTTL, log)
	defer sess.Close(ctx)
	if ing.Resumed {
		// Runners leaves this process out; only a log line's wording
		// depends on it, so an error reads as none.
		if others, _ := l.Runners(ctx, b.Seq); len(others) > 0 {
			// Not a resume: the batch is being sent, and this run takes a share.
			log.Info("joining batch", "batch", b.ID, "file", f.csv, "rows", b.RowsTotal, "process", self, "with", ledger.RunnersText(others))
		} else {
			log.Info("resuming batch", "batch", b.ID, "file", f.csv, "rows", b.RowsTotal, "process", self)
		}
	} else {
		// Money is rupees in text and integer paise in JSON (SPEC 5).
		amount := []any{"amount", batch.FormatRupees(ing.Paise)}
		if f.logs.json() {
			amount = []any{"amount_paise", ing.Paise}
		}
		log.Info("file recorded", append([]any{"batch", b.ID, "file", f.csv, "rows", ing.Rows, "to_send", ing.Queued},
			append(amount, "rejected", ing.Rejected, "conflict", ing.Conflicts, "process", self)...)...)
		if ing.Rejected+ing.Conflicts > 0 {
			var jsonLog *slog.Logger
			if f.logs.json() {
				jsonLog = log
			}
			printProblems(ctx, l, b, stderr, jsonLog, 10, ing.Rejected+ing.Conflicts)
		}
	}
	if f.dryRun {
		return f.dryRunEnd(ctx, l, b, ing.Resumed, log, stdout, stderr)
	}

	warnRateNotShared(ctx, l, b, cfg.Rate, log)
	cfg.Owner = owner
	eng := batch.New(l, client, cfg)
	sess.Start(ctx, eng)
	if err := eng.Prepare(ctx, b); err != nil {
		return prepareError(err)
	}
	stopProgress := showProgress(ctx, f.logs.progressMode(f.progress), stderr, eng, log)
	sendErr := eng.Send(ctx, b)
	if sendErr == nil && ctx.Err() == nil {
		sendErr = eng.Resolve(ctx, b)
	}
	// Stopped sending (the wallet, the account): the rows already at the
	// provider are still asked about, so the report says what happened to
	// them.
	sendErr = eng.EnquireAfterStop(ctx, b, sendErr)
	if sendErr == nil && ctx.Err() == nil && l.Shared() {
		// Other processes work on the batch too: stay until it is done,
		// or until a dead one's lease has long run out. A process stopped
		// inside a transaction (SIGSTOP, a frozen VM) keeps its rows until
		// the server ends that transaction, after the abandon time; its
		// lease ran out before: a survivor that gave up sooner left rows
		// in flight, and the batch unfinished (a CI run:
		// TestTakeoverWaitsForARequestStillInFlight, 12 s of a 15 s wait).
		patience := 2*f.leaseTTL + f.conn.resolveTimeout
		if postgres.IsURL(f.ledger) {
			patience = max(patience, abandonAfter(f.leaseTTL)+f.leaseTTL+f.conn.resolveTimeout)
		}
		sendErr = eng.Finish(ctx, b, sess.Recover, patience)
	}
	stopProgress()
	st := eng.Stats()
	end := finish(ctx, l, b, sendErr, f.reports, f.logs, log, &st, stdout, stderr)
	return ledgerKept(f.ledger, opened, end)
}

// ledgerKept is end, unless the SQLite ledger at path is no longer the
// file opened when the command began (see ledgerFileInfo): then exit 3.
// SQLite went on writing into a file no longer at that path: the record
// of what the command paid or settled is gone with it, and the same
// command run again would start a new, empty ledger.
func ledgerKept(path string, opened os.FileInfo, end error) error {
	if opened == nil {
		return end
	}
	if now := ledgerFileInfo(path); now != nil && os.SameFile(opened, now) {
		return end
	}
	msg := fmt.Sprintf("the ledger %s was removed or replaced while this run used it: what this run recorded is lost with it; "+
		"restore it if you can, and check the provider's statement before sending this file again", absPath(path))
	if end != nil && end.Error() != "" {
		msg += " (the run ended: " + end.Error() + ")"
	}
	return &exitError{code: exitIncomplete, err: errors.New(msg)}
}

// ledgerFileInfo is the file a SQLite ledger path names now, nil for a
// PostgreSQL ledger or a path that names nothing.
func ledgerFileInfo(path string) os.FileInfo {
	if postgres.IsURL(path) {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}

// dryRunEnd reports a dry run: the batch recorded, nothing sent.
// A file recorded before (resumed) gets the same answer as the first time:
// its rejected and conflict rows, from the ledger, and exit 2.
func (f *runFlags) dryRunEnd(ctx context.Context, l ledger.Store, b ledger.Batch, resumed bool, log *slog.Logger, stdout, stderr io.Writer) error {
	text := stdout
	if f.logs.json() {
		text = io.Discard
	}
	fmt.Fprintf(text, "dry run: batch %s recorded, nothing sent\n", b.ID)
	counts, err := l.Counts(ctx, b.Seq)
	if err != nil {
		return start(err)
	}
	problems := counts[ledger.StateRejected].Rows + counts[ledger.StateConflict].Rows
	if resumed && problems > 0 {
		var jsonLog *slog.Logger
		if f.logs.json() {
			jsonLog = log
		}
		printProblems(ctx, l, b, stderr, jsonLog, 10, problems)
	}
	if err := writeCounts(text, b, counts); err != nil && !errors.Is(err, syscall.EPIPE) {
		return start(err)
	}
	// The reports of a dry run show what would be sent: asked for, they
	// are written, or the exit says they were not.
	var end error
	bg, cancel := batch.AfterStop(ctx)
	defer cancel()
	if err := f.reports.write(bg, l, b, text); err != nil {
		reportsFailed(f.logs, log, stderr, err)
		end = &exitError{code: exitIncomplete, err: errors.New("the dry run's reports were not written (see above)")}
	} else if problems > 0 {
		end = &exitError{code: exitFinishedNo}
	}
	if f.logs.json() {
		printJSONSummary(stdout, b, counts, codeOf(end), errText(end), "dry_run", true, "reports", f.reports.dir)
	}
	return end
}

// reportsFailed says that the reports were not written.
func reportsFailed(logs logFlags, log *slog.Logger, stderr io.Writer, err error) {
	if logs.json() {
		log.Error("reports not written", "err", err)
		return
	}
	fmt.Fprintln(stderr, "aopbatch: reports:", err)
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// finish prints the batch's state and, when run is not nil, what the run
// measured, writes reports and picks the exit code. With JSON logs, stdout
// gets only the summary line (see printJSONSummary).
func finish(ctx context.Context, l ledger.Store, b ledger.Batch, runErr error, rep endReports, logs logFlags, log *slog.Logger, run *batch.RunStats, stdout, stderr io.Writer) error {
	bg, cancel := batch.AfterStop(ctx)
	defer cancel()
	runErr = explainLedgerStop(ledgerName(l), runErr)
	runErr = explainKnownRefs(ledgerName(l), b, runErr)
	counts, err := l.Counts(bg, b.Seq)
	if err != nil {
		if runErr != nil { // why the run stopped comes first
			err = fmt.Errorf("%w; then counting the batch's rows: %v", runErr, err)
		}
		return &exitError{code: exitIncomplete, err: err}
	}
	text := stdout
	if logs.json() {
		text = io.Discard
	}
	if err := writeCounts(text, b, counts); err != nil && !errors.Is(err, syscall.EPIPE) {
		// A reader that went away (| head) read what it wanted; the
		// rows are as settled as they were.
		return &exitError{code: exitIncomplete, err: err}
	}
	if run != nil {
		fmt.Fprintln(text, run.String())
	}
	rep.run = run
	rep.exitCode = func(repErr error) int { return codeOf(endOf(ctx, counts, runErr, repErr)) }
	rep.takenOver = takenOver(runErr)
	rep.stopReason = stopReason(runErr)
	repErr := rep.write(bg, l, b, text)
	if repErr != nil {
		reportsFailed(logs, log, stderr, repErr)
	}
	end := endOf(ctx, counts, runErr, repErr)
	if logs.json() {
		extra := []any{"reports", rep.dir}
		if run != nil {
			extra = append(extra, "run", runJSON(*run))
		}
		// As the error says in words: the counts are a moment of the
		// other process's run, not where this one left the batch.
		extra = append(extra, "taken_over", rep.takenOver, "stop_reason", rep.stopReason)
		if rs, err := changing(bg, l, b, counts); err == nil && len(rs) > 0 {
			extra = append(extra, "running", runnersJSON(rs))
		}
		printJSONSummary(stdout, b, counts, codeOf(end), errText(end), extra...)
	}
	return end
}

// stopReason is why the run stopped sending: the Reason of the stop that
// ended the sending (the first of a chain, when another stop ended the
// enquiries after it), "" when it did not stop.
func stopReason(err error) string {
	var stop *batch.StopError
	if !errors.As(err, &stop) {
		return ""
	}
	for stop.Before != nil {
		stop = stop.Before
	}
	return stop.Reason
}

// takenOver says whether the run stopped because another process took
// its batch over.
func takenOver(err error) bool {
	var stop *batch.StopError
	if !errors.As(err, &stop) {
		return errors.Is(err, ledger.ErrLeaseLost)
	}
	for ; stop != nil; stop = stop.Before {
		if stop.TakenOver {
			return true
		}
	}
	return false
}

// endOf picks how a run that got as far as sending ends: its error and
// exit code.
func endOf(ctx context.Context, counts ledger.Counts, runErr, repErr error) error {
	code := outcome(counts)
	switch {
	case runErr != nil: // a stop (batch.StopError) or a failure: incomplete either way
		return &exitError{code: exitIncomplete, err: stopAdvice(runErr, counts)}
	case ctx.Err() != nil:
		msg := "interrupted: run the same command again to resume"
		if parts := unsettledParts(counts); len(parts) > 0 {
			// What is left, and above all what may have moved: the
			// counts table above says it in states, this in words.
			msg += " (" + strings.Join(parts, "; ") + ")"
		}
		return &exitError{code: exitIncomplete, err: errors.New(msg)}
	case repErr != nil:
		// Rows are settled but what cron was told to leave behind is not:
		// never exit 0 (or 2) without it. A rerun sends nothing more.
		return &exitError{code: exitIncomplete, err: errors.New("the run finished but its reports were not written (see above): run the same command again, which sends nothing more, or use aopbatch report")}
	}
	switch code {
	case exitIncomplete:
		return &exitError{code: code, err: errors.New(unsettledMessage(counts))}
	case exitFinishedNo:
		return &exitError{code: code}
	}
	return nil
}

// stopAdvice adds to a stop what to do about the rows left (counts c, read
// after the run), when the stop's own advice would be about the rows as
// they were when it stopped: the enquiries after an --max-unknown-amount
// stop (batch.Engine.EnquireAfterStop) may settle every row that was
// unknown then, leaving rows to send, which aopbatch resolve does not
// send. The other stops' advice holds whatever the enquiries find: a
// wallet stop's "top up, then run again" both sends and asks, and the
// rest ask nothing after the stop. The stop stays in err's chain.
func stopAdvice(err error, c ledger.Counts) error {
	var s *batch.StopError
	if errors.As(err, &s) {
		for ; s != nil; s = s.Before {
			if s.Reason == batch.StopUnknownLimit {
				return withLeft(err, c)
			}
		}
	}
	return err
}

// withLeft adds to err what is left of the batch (counts c) and what
// settles it.
func withLeft(err error, c ledger.Counts) error {
	parts := unsettledParts(c)
	switch {
	case c[ledger.StatePending].Rows+c[ledger.StateDuplicate].Rows+c[ledger.StateUnknown].Rows > 0:
		return fmt.Errorf("%w; left: %s", err, strings.Join(parts, "; "))
	case len(parts) == 0:
		return fmt.Errorf("%w; none of the batch's rows is of unknown outcome now, and nothing is left to send", err)
	}
	return fmt.Errorf("%w; none of the batch's rows is of unknown outcome now; left: %s", err, strings.Join(parts, "; "))
}

// unsettledMessage says which rows are not final and what settles them:
// held and queued rows go out when aopbatch run runs again (resolve sends
// nothing new); pending, duplicate and unknown rows wait for the
// provider's answer, which aopbatch resolve (or run) asks for.
func unsettledMessage(c ledger.Counts) string {
	return "not finished: " + strings.Join(unsettledParts(c), "; ")
}

// unsettledParts is unsettledMessage's list: one part per kind of row
// left, none when every row is final.
func unsettledParts(c ledger.Counts) []string {
	var parts []string
	if n := c[ledger.StateHeld].Rows; n > 0 {
		parts = append(parts, fmt.Sprintf("%d held (operator down): run the same aopbatch run command again later to send them", n))
	}
	if n := c[ledger.StateQueued].Rows; n > 0 {
		parts = append(parts, fmt.Sprintf("%d not sent yet: run the same aopbatch run command again to send them", n))
	}
	if n := c[ledger.StateInflight].Rows; n > 0 {
		// Marked in flight, no outcome recorded: the run ended at once
		// (a second signal) with their requests out.
		parts = append(parts, fmt.Sprintf("%d in flight when the run ended, which may have reached the provider: the same aopbatch run command asks about them before sending anything again", n))
	}
	if n := c[ledger.StatePending].Rows + c[ledger.StateDuplicate].Rows + c[ledger.StateUnknown].Rows; n > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting for the provider's final answer (money may have moved): run aopbatch resolve later (or the aopbatch run command again); never send them again yourself", n))
	}
	return parts
}

// outcome is the exit code a batch's counts call for.
func outcome(c ledger.Counts) int {
	switch {
	case c.Unsettled().Rows > 0:
		return exitIncomplete
	case c[ledger.StateSuccess].Rows == c.Total().Rows:
		return exitOK
	}
	return exitFinishedNo
}

// generatedMismatch explains a file refused under a batch id made from
// other content, when referenceids are generated: a corrected copy run
// whole under a new id would pay again the rows that batch already sent.
func generatedMismatch(ctx context.Context, l ledger.Store, id string, err error) error {
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
		return fmt.Errorf("%w. Nothing of batch %s was sent (a dry run?): run this file under a new --batch id, "+
			"or delete that batch first with aopbatch ledger drop --batch %s", err, id, id)
	}
	return fmt.Errorf("%w. If this is a corrected or re-saved copy, do not run it whole under a new --batch id: "+
		"its rows would get new referenceids and the rows already paid would be paid again. "+
		"Put only the rows still to pay in a file (rejects.csv holds the rejected ones) and run that under a new --batch id", err)
}

// warnRateNotShared says when another run sends another batch of this
// ledger now. A ledger shared by hosts (PostgreSQL) shares the account's
// rate between them; on SQLite each run keeps its own --rate, and two at
// 50/s sent 100/s to an account that allows 50 (a walkthrough). Only a
// warning: reading who runs failing must not stop the run.
func warnRateNotShared(ctx context.Context, l ledger.Store, own ledger.Batch, rate float64, log *slog.Logger) {
	if l.Shared() || !(rate > 0) {
		return
	}
	bs, err := l.Batches(ctx)
	if err != nil {
		return
	}
	var others []string
	for _, b := range bs {
		if b.Seq == own.Seq || b.Archived != "" || !b.Ready {
			continue
		}
		if rs, err := l.Runners(ctx, b.Seq); err == nil && len(rs) > 0 {
			others = append(others, fmt.Sprintf("batch %s (%s)", b.ID, ledger.RunnersText(rs)))
		}
	}
	if len(others) == 0 {
		return
	}
	log.Warn(fmt.Sprintf("another run is sending from this ledger now: on a SQLite ledger each run keeps its own --rate (%g/s here), "+
		"so together they send more than one account allows; give each run its share of the account's rate, run them one after another, "+
		"or use a PostgreSQL ledger, which shares the rate between runs", rate), "others", strings.Join(others, "; "))
}

// describeStartError turns the errors that stop a run before sending into
// one clear line with a hint.
func describeStartError(file string, err error) error {
	var fe *batch.FileError
	var ce *batch.ControlError
	switch {
	case errors.Is(err, context.Canceled):
		// Reading the file, or waiting for another process that holds its
		// batch: either way before this run sent anything.
		return errors.New("interrupted before this run recorded the file: it sent nothing; run the same command again to go on")
	case errors.As(err, &fe):
		return fmt.Errorf("%s: %w; nothing was sent", file, err)
	case errors.As(err, &ce) && ce.Resumed != "":
		return fmt.Errorf("%s: %w; batch %s is already in the ledger: this run sent nothing more of it (what earlier runs sent stays sent)", file, err, ce.Resumed)
	case errors.As(err, &ce):
		return fmt.Errorf("%s: %w; nothing was sent", file, err)
	case errors.Is(err, ledger.ErrBatchLocked):
		return fmt.Errorf("%w: wait for it to finish (or for its lock to expire if it died on another machine)", err)
	case errors.Is(err, ledger.ErrBatchArchived):
		return fmt.Errorf("%w: it is finished and nothing of it is sent again; read it with aopbatch report --ledger ARCHIVE --batch ID", err)
	case errors.Is(err, ledger.ErrBatchMismatch):
		return fmt.Errorf("%w: pick another --batch id, or omit --batch to derive one from the file", err)
	}
	return err
}
