package reports

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// oneBatch is a ledger holding one batch of the given header and rows,
// ingested as they are (rows with a Problem are rejected), nothing sent.
func oneBatch(t *testing.T, header []string, rows []ledger.IngestRow) (ledger.Reader, ledger.Batch) {
	t.Helper()
	return recordRows(t, "one", header, rows, true)
}

// recordRows is a ledger holding batch id (file id.csv) of the given
// header and rows, ingested as they are, nothing sent; whole says the run
// recording it finished (Batch.Ready), else it died part way.
func recordRows(t *testing.T, id string, header []string, rows []ledger.IngestRow, whole bool) (ledger.Reader, ledger.Batch) {
	t.Helper()
	ctx := context.Background()
	l, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "l.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	owner := ledger.NewOwner("test")
	b, err := l.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: "h", Source: id + ".csv", Header: header}, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.BeginIngest(ctx, b, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := in.AddMany(ctx, []ledger.IngestRow{r}); err != nil {
			t.Fatal(err)
		}
	}
	if whole {
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, b.ID, owner); err != nil {
			t.Fatal(err)
		}
	}
	b, err = l.Batch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return l, b
}

// Defect 8: the reader takes "CA<no-break space>Number" as canumber, so the
// reports must mask it too: one normaliser everywhere.
func TestMaskPIIUsesTheReadersColumnNames(t *testing.T) {
	header := []string{"operator", "CA\u00a0Number", "amount", "referenceid", "cell\u2003number", "User\u200bName"}
	raw := []string{"311", "DL12CB4685", "10.005", "R1", "9876543210", "RAVI KUMAR"}
	l, b := oneBatch(t, header, []ledger.IngestRow{{Line: 2, Raw: raw,
		Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "more than 2 decimals"}}})
	ctx := context.Background()
	s, err := Build(ctx, l, b, Options{MaskPII: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Write(ctx, l, dir, s, []string{"csv"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, FileRejects))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"DL12CB4685", "9876543210", "RAVI KUMAR"} {
		if strings.Contains(string(got), v) {
			t.Errorf("rejects.csv with --mask-pii holds %q unmasked:\n%s", v, got)
		}
	}
}

// reconciled is the fixture's summary reconciled with statement (the
// fixture's statement.csv when empty) and the reports written.
func reconciled(t *testing.T, f *fixture, statement string, o Options) (*Summary, *Statement, string) {
	t.Helper()
	ctx := context.Background()
	s, err := Build(ctx, f.l, f.b, o)
	if err != nil {
		t.Fatal(err)
	}
	var st *Statement
	if statement == "" {
		st, err = ReadStatementFile(filepath.Join(testdataDir, "statement.csv"), nil)
	} else {
		st, err = ReadStatement(strings.NewReader(statement), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(ctx, f.l, st); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(ctx, f.l, dir, s, nil); err != nil {
		t.Fatal(err)
	}
	return s, st, dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Defect 1: the statement says REF018 (recorded failed) was charged and
// REF017 (recorded success) was not kept. No report may offer REF018 for
// sending again, and export with the statement leaves it out; the refund
// is an action.
func TestActionsFollowTheStatement(t *testing.T) {
	f := newFixture(t)
	s, st, dir := reconciled(t, f, "", f.options(false))
	all := strings.Join(s.Attention.Actions, "\n")
	for _, want := range []string{
		"2 rows failed (₹30.00, nothing taken)",
		"1 row recorded failed (₹8.00) that the statement shows charged",
		"1 row recorded success (₹50.00) that the statement shows not kept",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("actions lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "3 rows failed") {
		t.Errorf("actions offer all 3 failed rows for resending:\n%s", all)
	}
	for _, name := range []string{FileMarkdown, FileHTML, FileJSON} {
		if got := readFile(t, filepath.Join(dir, name)); strings.Contains(got, "3 rows failed") {
			t.Errorf("%s offers all 3 failed rows for resending", name)
		}
	}
	var buf strings.Builder
	res, err := Export(context.Background(), f.l, f.b, ledger.StateFailed, &buf, ExportOptions{Statement: st})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "DL01PQ8888") || res.Rows != 2 || res.Charged != 1 {
		t.Errorf("export with the statement: %+v\n%s", res, buf.String())
	}
}

// Defect 5: money at risk is two figures, each with its rows listed.
func TestMoneyAtRiskIsTwoFigures(t *testing.T) {
	f := newFixture(t)
	s, _, dir := reconciled(t, f, "", f.options(false))
	u, n := s.AtRisk.OutcomeUnknown, s.AtRisk.NotYetSent
	if u.Rows != 4 || u.AmountPaise != 700+1200+999+300 {
		t.Errorf("outcome unknown %d rows %d paise, want 4 and 3199", u.Rows, u.AmountPaise)
	}
	if n.Rows != 2 || n.AmountPaise != 2000+1500 {
		t.Errorf("not yet sent %d rows %d paise, want 2 and 3500", n.Rows, n.AmountPaise)
	}
	if len(u.Listed) != 4 || len(n.Listed) != 2 {
		t.Errorf("listed %d and %d rows, want 4 and 2", len(u.Listed), len(n.Listed))
	}
	for _, name := range []string{FileMarkdown, FileHTML} {
		got := readFile(t, filepath.Join(dir, name))
		for _, ref := range []string{"REF006", "REF007", "REF008", "REF011", "REF009", "REF010"} {
			if !strings.Contains(got, ref) {
				t.Errorf("%s does not list %s at risk", name, ref)
			}
		}
		for _, want := range []string{"₹31.99", "₹35.00"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks the figure %s", name, want)
			}
		}
	}
}

// Defect 6: the duplicated REF002 line is a second charge: it is in the
// statement's control total, its category has an amount, and the
// statement's own totals are given.
func TestStatementTotalsCountEveryLine(t *testing.T) {
	f := newFixture(t)
	s, _, _ := reconciled(t, f, "", f.options(false))
	r := s.Reconciliation
	if got, want := r.ControlTotals.StatementSuccessPaise, int64(1000+2550+1200+4500+800+1000+9900); got != want {
		t.Errorf("statement success %d, want %d (the duplicated line counted)", got, want)
	}
	if got := r.AmountsPaise[DuplicatedInStatement]; got != 1000 {
		t.Errorf("duplicated_in_statement amount %d, want 1000", got)
	}
	if got := r.AmountsPaise[StatusMismatch]; got != 1200+999+5000+800 {
		t.Errorf("status_mismatch amount %d", got)
	}
	tot := r.StatementTotals
	if tot.Lines != 13 || tot.Success != (Tally{8, 22050}) || tot.Refunded != (Tally{1, 10000}) ||
		tot.Failed != (Tally{3, 6499}) || tot.Pending != (Tally{1, 700}) {
		t.Errorf("statement totals %+v", tot)
	}
}

// Defect 7: a rejected row's referenceid on the statement means someone
// sent it: the report says so, and rejects.csv does not offer it again.
func TestRejectedRowOnTheStatementWarns(t *testing.T) {
	f := newFixture(t)
	s, _, dir := reconciled(t, f, "refid,amount,status\nREF002,10.00,1\nREF012,10.00,1\n", f.options(false))
	var found bool
	for _, d := range s.Reconciliation.Discrepancies {
		if d.ReferenceID == "REF012" {
			found = true
			if !strings.Contains(d.Note, "line 12") || !strings.Contains(d.Note, "find out who sent it") {
				t.Errorf("REF012: note %q", d.Note)
			}
		}
	}
	if !found {
		t.Error("REF012 not listed")
	}
	for _, rec := range readCSV(t, filepath.Join(dir, FileRejects)) {
		if rec[3] == "REF012" && (rec[len(rec)-1] != "no" || !strings.Contains(rec[len(rec)-2], "statement")) {
			t.Errorf("rejects.csv offers REF012 for resending: %q", rec)
		}
	}
}

// A statement line with cells missing is read (a provider leaves empty
// last cells off), but a value missing in the middle would have shifted
// the rest: a row it matches is not taken as matched on its word, but
// asked about (a review).
func TestShortStatementLineIsAskedAbout(t *testing.T) {
	f := newFixture(t)
	s, _, _ := reconciled(t, f, "refid,txnid,amount,status,refunded\nREF002,T2,10.00,1\n", f.options(false))
	found := false
	for _, d := range s.Reconciliation.Discrepancies {
		if d.ReferenceID != "REF002" {
			continue
		}
		found = true
		if d.Category != StatusMismatch || !strings.Contains(d.Note, "has cells missing") {
			t.Errorf("REF002 on a short line: %s %q, want a status mismatch saying the line has cells missing", d.Category, d.Note)
		}
	}
	if !found {
		t.Error("REF002, on a short line, is not listed: taken as matched")
	}
}

// A rejected row's referenceid on a statement line with cells missing
// may read failed with its values shifted (a charge, its txnid missing):
// rejects.csv does not offer it again on that line's word (a review).
func TestRejectedRowOnAShortStatementLineWarns(t *testing.T) {
	f := newFixture(t)
	_, _, dir := reconciled(t, f, "refid,txnid,amount,status,dateadded\nREF002,T2,10.00,1,2026-12-01\nREF012,10.00,1,0\n", f.options(false))
	listed := false
	for _, rec := range readCSV(t, filepath.Join(dir, FileRejects)) {
		if rec[3] != "REF012" {
			continue
		}
		listed = true
		if rec[len(rec)-1] != "no" || !strings.Contains(rec[len(rec)-2], "cells missing") {
			t.Errorf("rejects.csv offers REF012, on a short statement line, for resending: %q", rec)
		}
	}
	if !listed {
		t.Error("REF012 not in rejects.csv")
	}
}

// A rejected row's referenceid that the statement shows failed and then
// charged is charged: every line under it counts, not only the first, as
// in the export that leaves it out.
func TestRejectedRowChargedOnALaterStatementLine(t *testing.T) {
	f := newFixture(t)
	s, _, dir := reconciled(t, f, "refid,amount,status\nREF012,10.00,0\nREF012,10.00,1\n", f.options(false))
	var warned bool
	for _, d := range s.Reconciliation.Discrepancies {
		warned = warned || d.ReferenceID == "REF012" && strings.Contains(d.Note, "find out who sent it")
	}
	if !warned {
		t.Error("no REF012 discrepancy says to find out who sent it")
	}
	var listed bool
	for _, rec := range readCSV(t, filepath.Join(dir, FileRejects)) {
		if rec[3] != "REF012" {
			continue
		}
		listed = true
		if rec[len(rec)-1] != "no" || !strings.Contains(rec[len(rec)-2], "statement line 3") {
			t.Errorf("rejects.csv offers REF012 for resending, or does not name statement line 3: %q", rec)
		}
	}
	if !listed {
		t.Error("rejects.csv does not list REF012")
	}
}

// A refid on several statement lines is one payment's history unless it
// is charged twice: lines with one txnid are one transaction, a line
// without one is its own; a row is compared with a charged transaction
// first, and only a second charged transaction is an extra charge. A
// charge and a refund no txnid ties together are asked about.
func TestStatementLinesOfOnePayment(t *testing.T) {
	const (
		plain = "refid,amount,status\n"
		txn   = "refid,txnid,amount,status,refunded\n"
	)
	for _, tc := range []struct {
		name, stmt, ref   string
		disputed          bool // the row
		failedButCharged  Tally
		successNotKept    Tally
		extra             Tally
		net               int64
		disputedStatement int // statement-only disputes (no row)
	}{
		// REF004 is recorded failed: failed, then charged late.
		{"failed then charged", plain + "REF004,5.00,0\nREF004,5.00,1\n", "REF004", true, Tally{1, 500}, Tally{}, Tally{}, 0, 0},
		{"charged then failed", plain + "REF004,5.00,1\nREF004,5.00,0\n", "REF004", true, Tally{1, 500}, Tally{}, Tally{}, 0, 0},
		// One charge kept, another refunded: charged.
		{"kept and refunded", txn + "REF004,T1,5.00,1,0\nREF004,T2,5.00,1,1\n", "REF004", true, Tally{1, 500}, Tally{}, Tally{}, 0, 0},
		{"refunded and kept", txn + "REF004,T2,5.00,1,1\nREF004,T1,5.00,1,0\n", "REF004", true, Tally{1, 500}, Tally{}, Tally{}, 0, 0},
		// One refunded, another pending: perhaps charged.
		{"refunded and pending", txn + "REF004,T1,5.00,1,1\nREF004,T2,5.00,2,0\n", "REF004", true, Tally{1, 500}, Tally{}, Tally{}, 0, 0},
		// REF002 is recorded success.
		{"pending then charged", plain + "REF002,10.00,2\nREF002,10.00,1\n", "REF002", false, Tally{}, Tally{}, Tally{}, 0, 0},
		{"charged then refunded, one txnid", txn + "REF002,T9,10.00,1,0\nREF002,T9,10.00,1,1\n", "REF002", true, Tally{}, Tally{1, 1000}, Tally{}, 0, 0},
		{"charged then refunded, no txnid", plain + "REF002,10.00,1\nREF002,10.00,refunded\n", "REF002", true, Tally{}, Tally{}, Tally{}, 0, 0},
		// "0" is also "taken and returned": one transaction charged and
		// failed, or a charge and a "0" no txnid ties together.
		{"charged then failed, one txnid", txn + "REF002,T9,10.00,1,0\nREF002,T9,10.00,0,0\n", "REF002", true, Tally{}, Tally{}, Tally{}, 0, 0},
		{"charged then failed, no txnid", plain + "REF002,10.00,1\nREF002,10.00,0\n", "REF002", true, Tally{}, Tally{}, Tally{}, 0, 0},
		{"charged then failed, one without txnid", txn + "REF002,T9,10.00,1,0\nREF002,,10.00,0,0\n", "REF002", true, Tally{}, Tally{}, Tally{}, 0, 0},
		{"charged then failed, two txnids", txn + "REF002,T9,10.00,1,0\nREF002,T8,10.00,0,0\n", "REF002", false, Tally{}, Tally{}, Tally{}, 0, 0},
		{"charged twice, refunded once, no txnid", plain + "REF002,10.00,1\nREF002,10.00,1\nREF002,10.00,refunded\n", "REF002", true,
			Tally{}, Tally{}, Tally{1, 1000}, 1000, 1},
		{"charged twice", plain + "REF002,10.00,1\nREF002,10.00,1\n", "REF002", false, Tally{}, Tally{}, Tally{1, 1000}, 1000, 1},
		{"one charge listed twice", txn + "REF002,T9,10.00,1,0\nREF002,T9,10.00,1,0\n", "REF002", false, Tally{}, Tally{}, Tally{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s, _, _ := reconciled(t, f, tc.stmt, f.options(false))
			r := s.Reconciliation
			if r.FailedButCharged != tc.failedButCharged || r.SuccessNotKept != tc.successNotKept || r.ExtraCharges != tc.extra || r.NetToRecoverPaise != tc.net {
				t.Errorf("failed but charged %+v, success not kept %+v, extra charges %+v, net to recover %d; want %+v, %+v, %+v, %d",
					r.FailedButCharged, r.SuccessNotKept, r.ExtraCharges, r.NetToRecoverPaise, tc.failedButCharged, tc.successNotKept, tc.extra, tc.net)
			}
			disputes, err := s.Disputes(context.Background(), f.l)
			if err != nil {
				t.Fatal(err)
			}
			statementOnly, rowDisputed := 0, false
			for _, d := range disputes {
				if d.Row == nil && d.ReferenceID == tc.ref {
					statementOnly++
				}
				rowDisputed = rowDisputed || d.Row != nil && d.ReferenceID == tc.ref
			}
			if statementOnly != tc.disputedStatement || rowDisputed != tc.disputed {
				t.Errorf("disputes: %d statement lines of %s, row disputed %v; want %d, %v", statementOnly, tc.ref, rowDisputed, tc.disputedStatement, tc.disputed)
			}
		})
	}
}

// The control totals count each charge the statement keeps once: not a
// line listed twice under one txnid, not a charge refunded under it.
func TestControlTotalsCountEachKeptCharge(t *testing.T) {
	for _, tc := range []struct {
		name, stmt string
		want       int64
	}{
		{"listed twice", "REF002,T9,10.00,1,0\nREF002,T9,10.00,1,0\n", 1000},
		{"charged twice", "REF002,T9,10.00,1,0\nREF002,T8,10.00,1,0\n", 2000},
		{"refunded", "REF005,T5,100.00,1,0\nREF005,T5,100.00,1,1\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			s, _, _ := reconciled(t, f, "refid,txnid,amount,status,refunded\n"+tc.stmt, f.options(false))
			if got := s.Reconciliation.ControlTotals.StatementSuccessPaise; got != tc.want {
				t.Errorf("statement success %d paise, want %d", got, tc.want)
			}
		})
	}
}

// A queued row the statement shows charged is not simply advised for
// resuming: someone sent it, and that comes first.
func TestQueuedRowChargedIsNotSimplyResumed(t *testing.T) {
	f := newFixture(t)
	s, _, _ := reconciled(t, f, "refid,amount,status\nREF010,15.00,1\n", f.options(false))
	var resume string
	for _, a := range s.Attention.Actions {
		if strings.Contains(a, "not sent yet") {
			resume = a
		}
	}
	if !strings.Contains(resume, "1 of them charged on the statement: find out who sent those before") {
		t.Errorf("resume advice %q does not put finding out who sent REF010 first", resume)
	}
}

// Defect 10: one outcome per response code row; Indian grouping; --tz.
func TestByCodeOneOutcomePerRow(t *testing.T) {
	f := newFixture(t)
	s, _, _ := reconciled(t, f, "", f.options(false))
	seen := map[string]bool{}
	for _, c := range s.ByCode {
		k := codeName(c.Code) + "/" + string(c.State)
		if c.Code == nil {
			k += "/" + c.Message // rows without an answer: one line per error code
		}
		if seen[k] {
			t.Errorf("code %s outcome %s on two rows", codeName(c.Code), c.State)
		}
		seen[k] = true
	}
	// REF002/3/16/17/19 were answered 1 and are success: one row.
	for _, c := range s.ByCode {
		if c.Code != nil && *c.Code == 1 && c.State == ledger.StateSuccess && c.Rows != 5 {
			t.Errorf("code 1 success: %d rows, want 5", c.Rows)
		}
	}
}

func TestNumbersForPeople(t *testing.T) {
	f := newFixture(t)
	ist, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	o := f.options(false)
	o.Location = ist
	_, _, dir := reconciled(t, f, "", o)
	for _, name := range []string{FileMarkdown, FileHTML} {
		got := readFile(t, filepath.Join(dir, name))
		if !strings.Contains(got, "₹1,000.00") && !strings.Contains(got, "₹100.00") {
			t.Errorf("%s: amounts not written as ₹ with grouping", name)
		}
		if !strings.Contains(got, "2025-03-01 17:30:00 IST") {
			t.Errorf("%s: generated time not in Asia/Kolkata", name)
		}
	}
}

// Defect 9: no green "nothing at risk" box over a disagreement; every
// discrepancy list says how many more are in reconciliation.csv; the
// sign of the difference is explained.
func TestHTMLSaysWhatItLeavesOut(t *testing.T) {
	f := newFixture(t)
	var b strings.Builder
	b.WriteString("refid,amount,status\n")
	for i := range 25 {
		b.WriteString("GHOST" + itoa(int64(i)) + ",1.00,1\n")
	}
	s, _, _ := reconciled(t, f, b.String(), f.options(false))
	s.AtRisk = AtRisk{}
	dir := t.TempDir()
	if _, err := Write(context.Background(), f.l, dir, s, []string{"html", "md"}); err != nil {
		t.Fatal(err)
	}
	html := readFile(t, filepath.Join(dir, FileHTML))
	if strings.Contains(html, `class="box ok"`) {
		t.Error("a green box while the statement disagrees")
	}
	for _, name := range []string{FileHTML, FileMarkdown} {
		got := readFile(t, filepath.Join(dir, name))
		if !strings.Contains(got, "5 more missing_in_ledger in reconciliation.csv") {
			t.Errorf("%s does not say how many discrepancies it leaves out", name)
		}
		if !strings.Contains(got, "statement minus ledger") {
			t.Errorf("%s does not explain the sign of the difference", name)
		}
	}
}

// A statement line listed twice (same transaction, same status) is said
// to be that: not "another status of the payment", which is a history
// (failed, then charged late).
func TestStatementLineListedTwiceIsNamedSo(t *testing.T) {
	f := newFixture(t)
	stmt := "refid,txnid,amount,status,refunded,operatorid,dateadded\n" +
		"REF016,T016,40.00,1,0,OPR7,2025-03-01 10:01:08\n" +
		"REF016,T016,40.00,1,0,OPR7,2025-03-01 10:01:08\n"
	s, _, _ := reconciled(t, f, stmt, f.options(false))
	var notes []string
	for _, d := range s.Reconciliation.Discrepancies {
		if d.ReferenceID == "REF016" && d.Category == DuplicatedInStatement {
			notes = append(notes, d.Note)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "listed again") || strings.Contains(notes[0], "another status") {
		t.Errorf("REF016's second line: notes %q, want one saying it is the same transaction listed again", notes)
	}
}
