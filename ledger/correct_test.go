package ledger

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The provider's evidence may correct a failed row to success and a
// success to refunded; the engine's own writer still cannot move a failed
// row to success, and no correction makes a row sendable.
func TestCorrect(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t, Options{})
	b, _ := ingest(t, l, "b", rowsFor("C", 3)) // lines 2, 3, 4
	o := NewOwner("reconcile")
	acquire(t, l, NewBatch{ID: "b"}, o)
	w, err := l.NewWriter(ctx, b.Seq, o)
	if err != nil {
		t.Fatal(err)
	}
	for line, to := range map[int]State{2: StateFailed, 3: StateSuccess, 4: StateFailed} {
		if err := w.MarkInflight(ctx, line); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(Update{Line: line, To: to, Code: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The engine's path: failed -> success is refused.
	if CanMove(StateFailed, StateSuccess) {
		t.Error("the engine's table allows failed -> success")
	}
	if err := w.Record(Update{Line: 2, To: StateSuccess, Code: -1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(w.Refused(), ErrTransition) || getRow(t, l, b.Seq, 2).State != StateFailed {
		t.Fatalf("the writer moved a failed row to success: %v, %s", w.Refused(), getRow(t, l, b.Seq, 2).State)
	}

	at := time.UnixMilli(1_700_000_000_000)
	ev := Attempt{Kind: "status", At: at, HTTPStatus: 200, Code: 1, Class: "success", Message: "reconcile: provider says charged, txnid T2"}
	if err := l.Correct(ctx, b.Seq, o, Correction{Line: 2, From: StateFailed, To: StateSuccess, TxnID: "T2", Evidence: ev, Message: "charged (reconcile)"}); err != nil {
		t.Fatal(err)
	}
	if r := getRow(t, l, b.Seq, 2); r.State != StateSuccess || r.ProviderTxnID != "T2" || r.Message != "charged (reconcile)" {
		t.Errorf("line 2 after correction: %s %q %q", r.State, r.ProviderTxnID, r.Message)
	}
	if err := l.Correct(ctx, b.Seq, o, Correction{Line: 3, From: StateSuccess, To: StateRefunded, Evidence: ev}); err != nil {
		t.Fatal(err)
	}
	var logged []AttemptRow
	if err := l.EachAttempt(ctx, b.Seq, func(a *AttemptRow) error { logged = append(logged, *a); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 2 || logged[0].Line != 2 || logged[0].State != StateSuccess || logged[0].Message != ev.Message || !logged[0].At.Equal(at) {
		t.Errorf("evidence logged: %+v", logged)
	}

	for _, c := range []struct {
		c    Correction
		want error
	}{
		{Correction{Line: 4, From: StateSuccess, To: StateRefunded}, ErrTransition},  // line 4 is failed
		{Correction{Line: 4, From: StateFailed, To: StateQueued}, ErrNotCorrectable}, // never sendable
		{Correction{Line: 4, From: StateFailed, To: StateInflight}, ErrNotCorrectable},
		{Correction{Line: 3, From: StateRefunded, To: StateSuccess}, ErrNotCorrectable},
	} {
		if err := l.Correct(ctx, b.Seq, o, c.c); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.c, err, c.want)
		}
	}
	// Without the lease nothing is written.
	if err := l.Release(ctx, "b", o); err != nil {
		t.Fatal(err)
	}
	if err := l.Correct(ctx, b.Seq, o, Correction{Line: 4, From: StateFailed, To: StateSuccess}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("without the lease: %v, want ErrLeaseLost", err)
	}
	if r := getRow(t, l, b.Seq, 4); r.State != StateFailed {
		t.Errorf("line 4 is %s", r.State)
	}
}
