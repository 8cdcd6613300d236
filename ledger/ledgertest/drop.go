package ledgertest

import (
	"context"
	"errors"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// DropUnsent deletes a batch nothing of which was sent (a dry run),
// freeing its referenceids; it keeps, whole, a batch any row of which was
// dispatched, marked in flight or answered, and needs the lease.
func (s suite) testDropUnsent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	dry := seedRows(t, l, "dry", 3)
	if err := l.DropUnsent(ctx, dry.Seq, ledger.NewOwner("nobody")); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("DropUnsent without the lease = %v, want ErrLeaseLost", err)
	}
	holdLease(t, l, dry.Seq)
	if err := l.DropUnsent(ctx, dry.Seq, testOwner); err != nil {
		t.Fatalf("DropUnsent(never sent) = %v", err)
	}
	if _, err := l.Batch(ctx, "dry"); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("Batch(dry) after the drop = %v, want ErrNoBatch", err)
	}
	// Its referenceids are free: the same rows are queued in a new batch.
	_, states := ingest(t, l, "again", rowsFor("dry", 3))
	for i, st := range states {
		if st != ledger.StateQueued {
			t.Errorf("row %d of the same referenceids after the drop: %s, want queued", i, st)
		}
	}
	for _, tc := range []struct {
		name string
		send func(w ledger.Writer)
	}{
		{"dispatched", func(w ledger.Writer) { dispatch(t, w, 2) }},
		{"marked", func(w ledger.Writer) { markInflight(t, w, 2) }},
		{"answered", func(w ledger.Writer) {
			markInflight(t, w, 2)
			record(t, w, ledger.Update{Line: 2, To: ledger.StateFailed, Code: 1, Attempt: &ledger.Attempt{Kind: "recharge", Code: 1, Class: "failed"}})
		}},
	} {
		b := seedRows(t, l, "sent-"+tc.name, 3)
		w := newWriter(t, l, b.Seq)
		tc.send(w)
		flush(t, w)
		if err := l.DropUnsent(ctx, b.Seq, testOwner); !errors.Is(err, ledger.ErrBatchSent) {
			t.Errorf("%s: DropUnsent = %v, want ErrBatchSent", tc.name, err)
		}
		if got := counts(t, l, b.Seq).Total().Rows; got != 3 {
			t.Errorf("%s: %d rows left after a refused drop, want 3", tc.name, got)
		}
	}
}
