package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/reports"
)

func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		conn                                 connFlags
		logs                                 logFlags
		batchID, statement, columns, out, tz string
		maskPII                              bool
		leaseTTL                             time.Duration
	)
	fs := newFlagSet("reconcile", "reconcile --statement FILE [--statement-columns MAP] [--ledger FILE] [--batch ID] [--out DIR] [connection flags]",
		"AOP_TOKEN=... aopbatch reconcile --statement provider-2026-11-26.csv --ledger nightly.db --auth bearer --out recon/2026-11-26", stderr)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(stderr, `
Compares a provider statement with the ledger: every batch whose rows the
statement names or that sent between its earliest and latest dateadded
(or --batch). Each row that disagrees is confirmed with the status enquiry
(only those rows), and what the provider confirms is recorded in the ledger
with the enquiry as evidence: a success later refunded becomes refunded, a
row recorded failed that the provider charged becomes success. The
statement alone never changes the ledger; nothing is ever sent. The reports
are written into --out (one directory per batch when there are several).
A statement line no batch of the ledger holds is counted once, in the
first batch's reports; the others' name it as counted there.
Exit codes: 0 everything agrees after confirmation; 2 some disagreement
remains (each listed with the provider's answer); 1 usage, ledger or
statement error.
`)
	}
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "reconcile this batch only (id, or latest)")
	fs.StringVar(&statement, "statement", "", "provider statement CSV (required)")
	fs.StringVar(&columns, "statement-columns", "", "statement headers, ours=theirs pairs, e.g. refid=Reference,amount=Amt")
	fs.StringVar(&out, "out", "", "directory for the reports (default reconcile-BATCH)")
	fs.StringVar(&tz, "tz", "", "time zone the reports show times in, e.g. Asia/Kolkata")
	fs.BoolVar(&maskPII, "mask-pii", false, "mask canumber, cellNumber and userName in the reports")
	fs.DurationVar(&leaseTTL, "lease-ttl", 30*time.Second, "how long the batch lock outlives a reconcile that died on another host")
	conn.register(fs)
	logs.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if statement == "" {
		return start(errors.New("reconcile needs --statement FILE"))
	}
	cols, err := reports.ParseStatementColumns(columns)
	if err != nil {
		return start(fmt.Errorf("--statement-columns: %w", err))
	}
	loc, err := parseTZ(tz)
	if err != nil {
		return start(err)
	}
	if err := checkLeaseTTL(leaseTTL); err != nil {
		return start(err)
	}
	log, err := logs.logger(stderr)
	if err != nil {
		return start(err)
	}
	noteLedger(log, *ledgerPath, false)
	conn.log = log
	// The statement and the ledger first: without them there is nothing
	// to ask the provider about.
	st, err := reports.ReadStatementFile(statement, cols)
	if err != nil {
		return start(err)
	}
	if isArchive(*ledgerPath) {
		return start(fmt.Errorf("%s is an archive made by aopbatch ledger archive: nothing in it is corrected; reconcile against the ledger its batches came from, or read it with aopbatch report", *ledgerPath))
	}
	l, err := openLedgerFile(ctx, *ledgerPath)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	opened := ledgerFileInfo(*ledgerPath) // it records what the provider confirms
	if err := conn.check(); err != nil {
		return start(err)
	}
	client, err := conn.client()
	if err != nil {
		return start(err)
	}
	batches, err := coveredBatches(ctx, l, st, batchID)
	if err != nil {
		return start(err)
	}
	if len(batches) == 0 {
		return start(errors.New("the statement names no row of any batch of this ledger, and no batch sent in its time range: pass --batch ID"))
	}
	opts := reports.Options{MaskPII: maskPII, Location: loc}
	// A statement line no batch holds is counted in the first batch's
	// report only: counted in each, one charge would be at risk once per
	// batch and the disagreements below would not add up.
	together := make([]string, len(batches))
	for i, b := range batches {
		together[i] = b.ID
	}
	remaining := 0
	for _, b := range batches {
		dir := out
		switch {
		case dir == "":
			dir = "reconcile-" + safeName(b.ID)
		case len(batches) > 1:
			dir = filepath.Join(out, safeName(b.ID))
		}
		n, err := reconcileBatch(ctx, l, client, b, together, st, opts, conn, leaseTTL, dir, stdout)
		if err != nil {
			return ledgerKept(*ledgerPath, opened, start(fmt.Errorf("reconcile batch %s: %w", b.ID, err)))
		}
		remaining += n
	}
	if remaining > 0 {
		return ledgerKept(*ledgerPath, opened, &exitError{code: exitFinishedNo,
			err: fmt.Errorf("%d %s after asking the provider: see above and reconciliation.csv", remaining, plural(remaining, "disagreement remains", "disagreements remain"))})
	}
	if err := ledgerKept(*ledgerPath, opened, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "reconcile: the ledger and the statement agree")
	return nil
}

// coveredBatches are the batches a statement covers: id when given, else
// every ready batch with a row the statement names or first sent within
// the statement's dateadded range.
func coveredBatches(ctx context.Context, l ledger.Store, st *reports.Statement, id string) ([]ledger.Batch, error) {
	if id != "" {
		b, err := l.Batch(ctx, id)
		if err != nil {
			return nil, err
		}
		if b.Archived != "" {
			return nil, fmt.Errorf("batch %s was archived to %s: nothing of it is corrected any more; its report comes from there", b.ID, b.Archived)
		}
		return []ledger.Batch{b}, nil
	}
	all, err := l.Batches(ctx)
	if err != nil {
		return nil, err
	}
	var out []ledger.Batch
	for _, b := range all {
		// An archived batch is finished and kept elsewhere: a statement
		// naming its rows is for a person to read against the archive.
		if !b.Ready || b.Archived != "" {
			continue
		}
		covers, _, err := statementCovers(ctx, l, st, b, 0)
		if err != nil {
			return nil, err
		}
		if covers {
			out = append(out, b)
		}
	}
	return out, nil
}

// statementCovers says whether statement st can show batch b's charges:
// it names one of b's rows, or one of b's rows was first sent within the
// span of its lines' dates widened by margin either side; and whether any
// row of b was sent at all.
func statementCovers(ctx context.Context, l ledger.Reader, st *reports.Statement, b ledger.Batch, margin time.Duration) (covers, sent bool, err error) {
	from, to, dated := st.Span()
	from, to = from.Add(-margin), to.Add(margin)
	errFound := errors.New("covered")
	err = l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		sent = sent || !r.FirstSent.IsZero()
		if r.State != ledger.StateRejected && r.State != ledger.StateConflict && st.Has(r.ReferenceID) {
			return errFound
		}
		if dated && !r.FirstSent.IsZero() && !r.FirstSent.Before(from) && !r.FirstSent.After(to) {
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, true, nil
	}
	return false, sent, err
}

// reconcileBatch confirms one batch's disagreements with the provider,
// records what it confirms, writes the reports and returns how many
// disagreements remain. together are the batches reconciled with st in
// this run, in order (see reports.ReconcileTogether).
func reconcileBatch(ctx context.Context, l ledger.Store, p batch.Prober, b ledger.Batch, together []string, st *reports.Statement, opts reports.Options,
	conn connFlags, leaseTTL time.Duration, dir string, stdout io.Writer) (int, error) {
	// The reports say what the provider answered about each row asked
	// (below), and advise asking it about none: with no row to ask, it
	// was asked about every row it can settle.
	opts.Asked = map[int]reports.Asked{}
	assess := func() (*reports.Summary, []reports.Disputed, error) {
		s, err := reports.Build(ctx, l, b, opts)
		if err != nil {
			return nil, nil, err
		}
		if err := s.ReconcileTogether(ctx, l, st, together); err != nil {
			return nil, nil, err
		}
		d, err := s.Disputes(ctx, l)
		return s, d, err
	}
	s, disputes, err := assess()
	if err != nil {
		return 0, err
	}
	var rows []ledger.Row
	for _, d := range disputes {
		if d.Row != nil && d.Row.ReferenceID != "" && confirmable(d.Row.State) {
			rows = append(rows, *d.Row)
		}
	}
	fmt.Fprintf(stdout, "batch %s: %d %s with the statement; asking the provider about %d %s\n", b.ID,
		len(disputes), plural(len(disputes), "disagreement", "disagreements"), len(rows), plural(len(rows), "row", "rows"))
	answers := map[int]batch.Confirmation{}
	if len(rows) > 0 {
		// The lease is held while the ledger is written, as resolve does:
		// no run of the batch may move these rows meanwhile. The enquiries
		// may outlast it (one at a time, at --rate), so it is renewed.
		sess, err := batch.Join(ctx, l, b, ledger.NewOwner(newRunID()), leaseTTL, conn.log)
		if err != nil {
			return 0, describeStartError("", err)
		}
		cctx, stop := context.WithCancelCause(ctx)
		sess.Keep(ctx, func(err error) { stop(fmt.Errorf("another aopbatch took over batch %s: %w", b.ID, err)) })
		confirmed, err := batch.Confirm(cctx, l, p, b.Seq, sess.Owner(), rows, batch.ConfirmOptions{
			Rate: conn.rate, MaxAttempts: conn.maxAttempts, Timeout: conn.timeout})
		sess.Close(ctx)
		stop(nil)
		if cause := context.Cause(cctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		if err != nil {
			return 0, err
		}
		for _, c := range confirmed {
			answers[c.Line] = c
			opts.Asked[c.Line] = reports.Asked{Why: c.Why, Final: c.Final(), To: c.To}
			if c.To != "" {
				fmt.Fprintf(stdout, "  line %d %s: %s -> %s: %s (recorded with the enquiry as evidence)\n", c.Line, c.ReferenceID, c.From, c.To, c.Why)
			}
		}
	}
	left := disputes
	if len(rows) > 0 {
		// Reconciled again: what the provider confirmed now agrees, and
		// the rest carry its answer.
		if s, left, err = assess(); err != nil {
			return 0, err
		}
	}
	for _, d := range left {
		fmt.Fprintf(stdout, "  %s\n", describeDispute(d, answers))
	}
	paths, err := reports.Write(ctx, l, dir, s, nil)
	if err != nil {
		return 0, err
	}
	printWritten(stdout, dir, paths)
	return len(left), nil
}

// confirmable are the states whose rows reconcile asks the provider about:
// rows it sent. A queued, held, rejected or conflict row was never sent
// by aopbatch; what the statement says of it is for a person.
func confirmable(s ledger.State) bool {
	switch s {
	case ledger.StateSuccess, ledger.StateFailed, ledger.StateRefunded, ledger.StatePending, ledger.StateDuplicate, ledger.StateUnknown:
		return true
	}
	return false
}

// describeDispute is one remaining disagreement with the provider's answer.
func describeDispute(d reports.Disputed, answers map[int]batch.Confirmation) string {
	var b strings.Builder
	if d.Line > 0 {
		fmt.Fprintf(&b, "line %d %s %s: ledger %s", d.Line, d.ReferenceID, d.Category, d.State)
	} else {
		fmt.Fprintf(&b, "statement line %d %s %s", d.StatementLine, d.ReferenceID, d.Category)
	}
	if d.StatementLine > 0 {
		fmt.Fprintf(&b, ", statement %s %s", d.StatementStatus, ledger.FormatRupees(d.StatementAmountPaise))
	}
	if c, ok := answers[d.Line]; ok && d.Line > 0 {
		fmt.Fprintf(&b, "; provider: %s", c.Answer.Verdict)
		if c.Answer.Message != "" {
			fmt.Fprintf(&b, " (%s)", c.Answer.Message)
		}
		fmt.Fprintf(&b, ": %s; the ledger is left as it is", c.Why)
	} else if d.Note != "" {
		fmt.Fprintf(&b, "; %s", d.Note)
	}
	return b.String()
}
