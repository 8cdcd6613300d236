package ledgertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// The provider's evidence may correct a failed row to success and a
// success to refunded; the engine's own writer still cannot move a failed
// row to success, and no correction makes a row sendable.
func (s suite) testCorrect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b", rowsFor("C", 3)) // lines 2, 3, 4
	o := ledger.NewOwner("reconcile")
	acquire(t, l, ledger.NewBatch{ID: "b"}, o)
	w, err := l.NewWriter(ctx, b.Seq, o)
	if err != nil {
		t.Fatal(err)
	}
	for line, to := range map[int]ledger.State{2: ledger.StateFailed, 3: ledger.StateSuccess, 4: ledger.StateFailed} {
		if err := w.MarkInflight(ctx, line, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(ledger.Update{Line: line, To: to, Code: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The engine's path: failed -> success is refused.
	if ledger.CanMove(ledger.StateFailed, ledger.StateSuccess) {
		t.Error("the engine's table allows failed -> success")
	}
	if err := w.Record(ledger.Update{Line: 2, To: ledger.StateSuccess, Code: -1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Refused(), ledger.ErrTransition) || getRow(t, l, b.Seq, 2).State != ledger.StateFailed {
		t.Fatalf("the writer moved a failed row to success: %v, %s", w.Refused(), getRow(t, l, b.Seq, 2).State)
	}

	at := time.UnixMilli(1_700_000_000_000)
	ev := ledger.Attempt{Kind: "status", At: at, HTTPStatus: 200, Code: 1, Class: "success", Message: "reconcile: provider says charged, txnid T2"}
	if err := l.Correct(ctx, b.Seq, o, ledger.Correction{Line: 2, From: ledger.StateFailed, To: ledger.StateSuccess, TxnID: "T2", Evidence: ev, Message: "charged (reconcile)"}); err != nil {
		t.Fatal(err)
	}
	if r := getRow(t, l, b.Seq, 2); r.State != ledger.StateSuccess || r.ProviderTxnID != "T2" || r.Message != "charged (reconcile)" {
		t.Errorf("line 2 after correction: %s %q %q", r.State, r.ProviderTxnID, r.Message)
	}
	if err := l.Correct(ctx, b.Seq, o, ledger.Correction{Line: 3, From: ledger.StateSuccess, To: ledger.StateRefunded, Evidence: ev}); err != nil {
		t.Fatal(err)
	}
	var logged []ledger.AttemptRow
	if err := l.EachAttempt(ctx, b.Seq, func(a *ledger.AttemptRow) error { logged = append(logged, *a); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 2 || logged[0].Line != 2 || logged[0].State != ledger.StateSuccess || logged[0].Message != ev.Message || !logged[0].At.Equal(at) ||
		logged[0].Process != o.Process() {
		t.Errorf("evidence logged: %+v", logged)
	}

	for _, c := range []struct {
		c    ledger.Correction
		want error
	}{
		{ledger.Correction{Line: 4, From: ledger.StateSuccess, To: ledger.StateRefunded}, ledger.ErrTransition},  // line 4 is failed
		{ledger.Correction{Line: 4, From: ledger.StateFailed, To: ledger.StateQueued}, ledger.ErrNotCorrectable}, // never sendable
		{ledger.Correction{Line: 4, From: ledger.StateFailed, To: ledger.StateInflight}, ledger.ErrNotCorrectable},
		{ledger.Correction{Line: 3, From: ledger.StateRefunded, To: ledger.StateSuccess}, ledger.ErrNotCorrectable},
	} {
		if err := l.Correct(ctx, b.Seq, o, c.c); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.c, err, c.want)
		}
	}
	// Without the lease nothing is written.
	if err := l.Release(ctx, "b", o); err != nil {
		t.Fatal(err)
	}
	if err := l.Correct(ctx, b.Seq, o, ledger.Correction{Line: 4, From: ledger.StateFailed, To: ledger.StateSuccess}); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("without the lease: %v, want ledger.ErrLeaseLost", err)
	}
	if r := getRow(t, l, b.Seq, 4); r.State != ledger.StateFailed {
		t.Errorf("line 4 is %s", r.State)
	}
}
