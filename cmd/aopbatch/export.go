package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/reports"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		batchID, state, out, statement, columns string
		keepRefs                                bool
	)
	fs := newFlagSet("export", "export [--ledger FILE] [--batch ID|latest] --state STATE [--statement FILE [--statement-columns MAP]] [--out FILE] [--keep-refs]",
		"aopbatch export --ledger nightly.db --batch latest --state failed --out retry.csv", stderr)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(stderr, `
Writes the rows of one state as an input CSV under the batch's own header, so
they can be corrected and sent as a new batch. The referenceid column is left
blank: each row needs a NEW referenceid chosen by a person (--keep-refs keeps
the old ones, which the provider answers as duplicates if it received them).
Rows whose money may have moved (success, pending, duplicate, unknown,
inflight), held rows (some may have been sent before) and queued rows (the
next run of the batch sends them) are exported only with --keep-refs: under
new referenceids they could be paid twice.
aopbatch resolve settles the unsettled ones under their own referenceids;
those it finds failed are exported with --state failed. Running the batch
again sends the held ones.
With --statement, every row the statement shows charged or pending is left
out: it must never be sent again (aopbatch reconcile records what the
provider says about it). A conflict row is left out while a row of another
batch holds its referenceid: it is most likely that payment, paid there or
offered by that batch's own export. A conflict row whose holder is in no batch
of the ledger read is left out too: read from an archive or a copy, the
batch that held it may be in another ledger, and may have paid it.
A rejected row that repeats the referenceid of another line of its file (or
of a row of another batch), whatever it was rejected for, is left out while
the referenceid is blanked: it may be that line's payment a second time
(rejects.csv marks one rejected as a repeat fixable "review").
`)
	}
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "batch id, or latest; may be omitted when the ledger holds one batch")
	fs.StringVar(&state, "state", "", "rows to export: "+stateNames())
	fs.StringVar(&out, "out", "", "file to write (default standard output)")
	fs.BoolVar(&keepRefs, "keep-refs", false, "keep the referenceid column instead of blanking it")
	fs.StringVar(&statement, "statement", "", "provider statement CSV: leave out the rows it shows charged or pending")
	fs.StringVar(&columns, "statement-columns", "", "statement headers, ours=theirs pairs, e.g. refid=Reference,amount=Amt")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	noteLedger(textLog(stderr), *ledgerPath, false)
	st := ledger.State(strings.ToLower(strings.TrimSpace(state)))
	if state == "" {
		return start(errors.New("export needs --state, e.g. --state failed"))
	}
	if !st.Valid() {
		return start(fmt.Errorf("--state %q is not a row state (%s)", state, stateNames()))
	}
	if keepsRefs(st) && !keepRefs {
		return start(movedError(st))
	}
	if fi, err := os.Stat(out); out != "" && out != "-" && err == nil && fi.IsDir() {
		return start(fmt.Errorf("--out %s is a directory: name a file, e.g. %s", out, filepath.Join(out, "retry.csv")))
	}
	cols, err := reports.ParseStatementColumns(columns)
	if err != nil {
		return start(fmt.Errorf("--statement-columns: %w", err))
	}
	if columns != "" && statement == "" {
		return start(errors.New("--statement-columns needs --statement"))
	}
	var st2 *reports.Statement
	if statement != "" {
		if st2, err = reports.ReadStatementFile(statement, cols); err != nil {
			return start(err)
		}
	}
	l, b, err := openExisting(ctx, *ledgerPath, batchID)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	warnIncomplete(ctx, stderr, l, b)
	counts, err := l.Counts(ctx, b.Seq)
	if err != nil {
		return start(err)
	}
	runners, err := changing(ctx, l, b, counts)
	if err != nil {
		return start(err)
	}
	if len(runners) > 0 {
		// Not a refusal: the states it could send or settle are exported
		// only with their referenceids (keepsRefs).
		fmt.Fprintf(stderr, "aopbatch: a run is working on batch %s now (%s): rows may change state as they are exported\n", b.ID, ledger.RunnersText(runners))
	}
	if keepsRefs(st) && !reports.HasRefColumn(b) {
		way := "aopbatch resolve settles them under their own"
		if st == ledger.StateQueued || st == ledger.StateHeld {
			way = "running the batch again sends them under their own"
		}
		return start(fmt.Errorf("export --state %s: batch %s's referenceids were generated (--generate-refs), so its file has no referenceid column "+
			"and a copy of these rows, sent again, would get new ones and could pay them twice; %s", st, b.ID, way))
	}

	if st2 != nil {
		// A statement of other days than the batch's leaves out nothing
		// it should, and reads as a check that was made. A day and a half
		// either side of its lines: they span the moments of its first
		// and last transactions, not its days, and a time without a zone
		// is read as UTC, which the provider's may be hours off.
		covers, sent, err := statementCovers(ctx, l, st2, b, 36*time.Hour)
		if err != nil {
			return start(err)
		}
		switch _, _, dated := st2.Span(); {
		case covers || !sent:
		case dated:
			return start(fmt.Errorf("--statement %s names none of batch %s's rows, and none of them was sent within its lines' dates: "+
				"it cannot show a row of this batch that the provider charged after all; export with the statement of the days the batch was sent", statement, b.ID))
		default:
			fmt.Fprintf(stderr, "aopbatch: warning: --statement %s names none of batch %s's rows and its lines have no dates to compare with the batch's: "+
				"if it is not the statement of the days the batch was sent, a row the provider charged after all is not caught by it\n", statement, b.ID)
		}
	}
	o := reports.ExportOptions{KeepRefs: keepRefs, Statement: st2}
	var res reports.ExportResult
	dest := "standard output"
	if out == "" || out == "-" {
		res, err = reports.Export(ctx, l, b, st, stdout, o)
	} else {
		dest = out
		err = replaceFile(out, func(w io.Writer) error {
			var err error
			res, err = reports.Export(ctx, l, b, st, w, o)
			return err
		})
	}
	if err != nil {
		return start(err)
	}
	fmt.Fprintf(stderr, "aopbatch: exported %d %s rows of batch %s to %s\n", res.Rows, st, b.ID, dest)
	if res.Charged > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d rows the statement shows charged or pending, or on a line with cells missing (%s): do not send them again; aopbatch reconcile confirms them with the provider\n",
			res.Charged, strings.Join(res.ChargedRefs, ", "))
	}
	if res.Ragged > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d rejected rows whose cells do not fit the header (more or fewer than its columns): "+
			"aopbatch report writes rejects.csv with each one's cells as they came, to be put under their columns by hand\n", res.Ragged)
	}
	if res.Repeated > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d rejected rows that repeat the referenceid of another line of the file or another batch: "+
			"each may be that line's payment a second time, and under a new referenceid it would be paid twice; one that is truly another payment goes into a new file by hand\n", res.Repeated)
	}
	if res.Retries > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d rows refused for the row they retry (another row retries it already, it was paid, or it is not in the ledger): %s. "+
			"Sent from here, each would pay that row once more\n", res.Retries, strings.Join(res.RetryLines, "; "))
	}
	if res.PaidLater > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d rows that a later batch of this ledger holds (the same operator, canumber and amount): %s. "+
			"Each is most likely this row sent again already, paid there, or failed there and offered by that batch's own export: "+
			"sent once more from here under a new referenceid it would be paid twice; "+
			"a row that is truly another payment goes into a new file by hand\n",
			res.PaidLater, strings.Join(res.PaidLaterRefs, "; "))
	}
	if res.HeldElsewhere > 0 {
		fmt.Fprintf(stderr, "aopbatch: left out %d conflict rows, each named with the row of another batch that holds its referenceid (or held it, in another ledger): %s. "+
			"Each is most likely that row's payment, paid or offered by that batch: sent from here too under a new referenceid, "+
			"it could be paid twice; a row that is truly another payment goes into a new file by hand\n",
			res.HeldElsewhere, strings.Join(res.HeldElsewhereRefs, "; "))
	}
	if res.Rows > 0 && res.NewRefs() && isArchive(*ledgerPath) {
		// paidLater reads the later batches of the ledger read: an
		// archive holds only what was archived with this batch, and the
		// retry that paid a row may be in the live ledger.
		fmt.Fprintln(stderr, "aopbatch: warning: exported from an archive: a later batch that sent these rows again (a retry) is in the live ledger "+
			"or another archive, which were not checked; export from here only after checking them, or a row may be paid twice")
	}
	if st == ledger.StateFailed && st2 == nil && res.Rows > 0 {
		// The ledger's "failed" is the provider's answer at the time; a
		// row it charged after all shows only on its statement, and under
		// a new referenceid it would be paid a second time.
		fmt.Fprintln(stderr, "aopbatch: warning: not checked against a provider statement: a row answered failed that the provider charged after all "+
			"would be paid twice under a new referenceid; export again with --statement FILE, which leaves such rows out")
	}
	if res.Rows > 0 && res.RetryColumn {
		where := "this ledger (" + ledgerName(l) + ")"
		if isArchive(*ledgerPath) {
			where = "the live ledger this archive came from (it keeps the archived batch's rows and their states)"
		}
		fmt.Fprintf(stderr, "aopbatch: the %s column names the row each one retries (BATCH:LINE): keep it, and run the file on %s, "+
			"which refuses a second file of the same rows and a row found paid since\n", reports.RetryOfColumn, where)
	}
	switch {
	case res.Rows == 0:
	case res.BlankedRefs:
		fmt.Fprintln(stderr, "aopbatch: the referenceid column is blank: give every row a NEW referenceid before sending, "+
			"or send the file with --generate-refs --batch NEW-ID, which makes new ones (--keep-refs keeps the old ones, for a list: run on this ledger, each row would be a conflict, never sent)")
	case res.RefColumn:
		fmt.Fprintln(stderr, "aopbatch: referenceids kept: the provider answers \"duplicate\" for any it already received; a new payment needs a new referenceid")
	default:
		fmt.Fprintln(stderr, "aopbatch: the file has no referenceid column (the batch used --generate-refs): send it with --generate-refs and a new --batch id, which derive new ones")
	}
	switch {
	case res.Rows == 0:
	case st == ledger.StateQueued:
		fmt.Fprintln(stderr, "aopbatch: warning: queued rows are still the batch's, and the next run of its file sends them: send them only under the referenceids kept here, never new ones")
	case keepsRefs(st):
		fmt.Fprintf(stderr, "aopbatch: warning: %s rows may have been charged: send them only under the referenceids kept here, never new ones\n", st)
	}
	return nil
}

// keepsRefs reports whether rows in state st are exported only with their
// referenceids: those that may have been charged, and held rows, among
// which may be a row sent before that an enquiry found no record of.
func keepsRefs(st ledger.State) bool {
	return mayHaveMoved(st) || st == ledger.StateHeld || st == ledger.StateQueued
}

// mayHaveMoved reports whether rows in state st may have been charged:
// paid, or sent with no final answer yet.
func mayHaveMoved(st ledger.State) bool {
	switch st {
	case ledger.StateSuccess, ledger.StatePending, ledger.StateDuplicate, ledger.StateUnknown, ledger.StateInflight:
		return true
	}
	return false
}

// movedError refuses a file of st rows with blank referenceids: the file
// export is for is one to send again, and under new referenceids a row
// the provider charged is charged twice. (A walkthrough: an export of
// unknown rows, sent with --generate-refs as it advised, paid all 48 twice.)
func movedError(st ledger.State) error {
	switch st {
	case ledger.StateHeld:
		// Held is mostly never sent, but an unknown row whose enquiry found
		// no record is held too when its operator is down.
		return errors.New("export --state held: held rows are sent by running the batch again once their operator is up; " +
			"a held row may have been sent before (an enquiry found no record of it), so under new referenceids it could be paid twice " +
			"(--keep-refs exports them with their referenceids)")
	case ledger.StateQueued:
		// Never sent, but still the batch's: the next run of its file sends
		// them under their own referenceids, and the copy under new ones.
		return errors.New("export --state queued: queued rows are sent by running the batch again (aopbatch run resumes it); " +
			"sent as a new file under new referenceids as well, they would be paid twice once the batch is resumed " +
			"(--keep-refs exports them with their referenceids, which the provider de-duplicates)")
	case ledger.StateSuccess:
		return errors.New("export --state success: these rows were charged; with blank referenceids, sent under new ones, " +
			"they would be paid twice (--keep-refs exports them with their referenceids, for a list)")
	}
	return fmt.Errorf("export --state %s: these rows may have been charged (their requests reached the provider and no final answer came back); "+
		"with blank referenceids, sent under new ones, they could be paid twice. aopbatch resolve asks the provider and settles them under their own "+
		"referenceids, sending again only those it has no record of; then export --state failed offers the ones that failed. "+
		"--keep-refs exports them with their referenceids, which the provider de-duplicates", st)
}

func stateNames() string {
	names := make([]string, len(ledger.States))
	for i, s := range ledger.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// replaceFile writes path through a temporary file renamed into place, mode
// 0600: the rows carry personal data.
func replaceFile(path string, fn func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fn(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
