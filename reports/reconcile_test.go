package reports

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Review: reconciled together, batches "other" and "b1" each counted
// REF-GHOST, a charge no batch holds, as missing_in_ledger: the same Rs 99
// charged and not sent twice, in two control totals and two disputes.
// Reconciled together, the first batch counts it (a second charge of it
// too) and the other lists it as counted there, so the batches' figures
// add up to the statement's own.
func TestReconcileTogetherCountsEachLineOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(testdataDir, "statement.csv"))
	if err != nil {
		t.Fatal(err)
	}
	// REF-GHOST charged again under another txnid: an extra charge.
	st, err := ReadStatement(strings.NewReader(string(raw)+"REF-GHOST,TG2,99.00,1,0,OPRG,2025-03-01 10:07:00\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.l.Batch(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	together := []string{other.ID, f.b.ID}
	var (
		sum      Reconciliation
		disputed int
		ghosts   = map[string]int{} // category -> REF-GHOST lines in reconciliation.csv
	)
	var statement StatementTotals
	for _, b := range []string{other.ID, f.b.ID} {
		bb, err := f.l.Batch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Build(ctx, f.l, bb, f.options(false))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReconcileTogether(ctx, f.l, st, together); err != nil {
			t.Fatal(err)
		}
		r := s.Reconciliation
		sum.MissingInLedger += r.MissingInLedger
		sum.CountedInOtherBatch += r.CountedInOtherBatch
		sum.ChargedNotSent.add(r.ChargedNotSent.AmountPaise)
		sum.ExtraCharges.add(r.ExtraCharges.AmountPaise)
		sum.NetToRecoverPaise += r.NetToRecoverPaise
		sum.ControlTotals.StatementSuccessRows += r.ControlTotals.StatementSuccessRows
		sum.ControlTotals.StatementSuccessPaise += r.ControlTotals.StatementSuccessPaise
		statement = r.StatementTotals
		d, err := s.Disputes(ctx, f.l)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range d {
			if x.ReferenceID == "REF-GHOST" {
				disputed++
			}
		}
		dir := filepath.Join(t.TempDir(), b)
		if _, err := Write(ctx, f.l, dir, s, nil); err != nil {
			t.Fatal(err)
		}
		for _, rec := range readCSV(t, filepath.Join(dir, FileReconciliation))[1:] {
			if rec[2] == "REF-GHOST" {
				ghosts[b+" "+rec[0]]++
				if b == f.b.ID && !strings.Contains(rec[10], "counted in the report of batch "+other.ID) {
					t.Errorf("%s: note %q does not say which report counts the line", b, rec[10])
				}
			}
		}
		if b == f.b.ID && !strings.Contains(readFile(t, filepath.Join(dir, "summary.md")), "counted in the report of batch "+other.ID) {
			t.Errorf("%s: summary.md does not say where REF-GHOST is counted", b)
		}
	}

	if sum.MissingInLedger != 1 || sum.ChargedNotSent.AmountPaise != 9900 {
		t.Errorf("missing_in_ledger %d, charged_not_sent %d paise across the batches; want 1, 9900 (REF-GHOST once)",
			sum.MissingInLedger, sum.ChargedNotSent.AmountPaise)
	}
	// REF002 charged twice (b1), REF-GHOST charged twice (no batch).
	if got, want := sum.ExtraCharges.AmountPaise, int64(1000+9900); got != want {
		t.Errorf("extra charges %d paise across the batches, want %d", got, want)
	}
	if sum.CountedInOtherBatch != 2 {
		t.Errorf("counted_in_other_batch %d, want 2 (both REF-GHOST lines, in b1)", sum.CountedInOtherBatch)
	}
	if disputed != 2 {
		t.Errorf("REF-GHOST disputed %d times, want 2 (its charge and its second charge, once each)", disputed)
	}
	want := map[string]int{other.ID + " " + string(MissingInLedger): 1, other.ID + " " + string(DuplicatedInStatement): 1,
		f.b.ID + " " + string(CountedInOtherBatch): 2}
	for k, n := range want {
		if ghosts[k] != n {
			t.Errorf("reconciliation.csv: %d REF-GHOST lines %s, want %d (all: %v)", ghosts[k], k, n, ghosts)
		}
	}
	// Every charged line belongs to one of the two batches or to none:
	// the batches' control totals add up to the statement's own.
	if got, want := sum.ControlTotals.StatementSuccessPaise, statement.Success.AmountPaise; got != want {
		t.Errorf("statement success across the batches %d paise, the statement's own %d", got, want)
	}
	if got, want := sum.ControlTotals.StatementSuccessRows, statement.Success.Rows; got != want {
		t.Errorf("statement success rows across the batches %d, the statement's own %d", got, want)
	}

	// Alone, or together with itself only, a batch counts it as before.
	for _, together := range [][]string{nil, {f.b.ID}} {
		s, err := Build(ctx, f.l, f.b, f.options(false))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReconcileTogether(ctx, f.l, st, together); err != nil {
			t.Fatal(err)
		}
		if r := s.Reconciliation; r.MissingInLedger != 1 || r.CountedInOtherBatch != 0 || r.ChargedNotSent.AmountPaise != 9900 {
			t.Errorf("together %v: missing_in_ledger %d, counted_in_other_batch %d, charged_not_sent %d paise; want 1, 0, 9900",
				together, r.MissingInLedger, r.CountedInOtherBatch, r.ChargedNotSent.AmountPaise)
		}
	}
	s, err := Build(ctx, f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReconcileTogether(ctx, f.l, st, []string{"x", "y"}); err == nil {
		t.Error("a batch not among those reconciled together: no error")
	}
}
