package ledgertest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// An archived batch keeps its counts, sums and referenceids, loses its
// attempts and bodies, names its archive, and is never run again; a batch
// with a row not final is not archived.
func (s suite) testArchive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	rows := append(rowsFor("A", 4), ledger.IngestRow{Line: 6, ReferenceID: "A-bad", Raw: []string{"x"},
		Problem: &ledger.Problem{Code: "bad", Column: "amount", Message: "bad"}})
	b, _ := ingest(t, l, "old", rows)
	w := newWriter(t, l, b.Seq)
	for line, to := range map[int]ledger.State{2: ledger.StateSuccess, 3: ledger.StateFailed, 4: ledger.StateSuccess, 5: ledger.StatePending} {
		markInflight(t, w, line)
		record(t, w, ledger.Update{Line: line, To: to, Code: 1, Attempt: &ledger.Attempt{Kind: "recharge", Code: 1, Class: string(to)}})
	}
	flush(t, w)
	if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz"); !errors.Is(err, ledger.ErrNotFinal) {
		t.Fatalf("Archive with a row pending: %v, want ErrNotFinal", err)
	}
	record(t, w, ledger.Update{Line: 5, To: ledger.StateSuccess, Code: -1})
	closeWriter(t, w)
	before := counts(t, l, b.Seq)
	if err := l.Archive(ctx, b.Seq, ledger.NewOwner("stranger"), "old.ledger.gz"); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Archive without the lease: %v, want ErrLeaseLost", err)
	}
	if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz"); err != nil {
		t.Fatalf("Archive: %v", err)
	}
	got, err := l.Batch(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if got.Archived != "old.ledger.gz" {
		t.Errorf("Archived = %q, want the archive's name", got.Archived)
	}
	if after := counts(t, l, b.Seq); !reflect.DeepEqual(after, before) {
		t.Errorf("counts after Archive %v, want %v", after, before)
	}
	if a := attempts(t, l, b.Seq); len(a) != 0 {
		t.Errorf("%d attempts left after Archive, want none", len(a))
	}
	if r := getRow(t, l, b.Seq, 2); len(r.Request) != 0 || r.State != ledger.StateSuccess || r.AmountPaise != 200 {
		t.Errorf("line 2 after Archive: %+v, want success, 2.00, no body", r)
	}
	if err := l.Release(ctx, "old", testOwner); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "old"}, ledger.NewOwner("again"), testTTL); !errors.Is(err, ledger.ErrBatchArchived) ||
		!strings.Contains(err.Error(), "old.ledger.gz") {
		t.Errorf("Acquire of an archived batch: %v, want ErrBatchArchived naming the archive", err)
	}
	// Its referenceids stay held.
	nb, states := ingest(t, l, "new", []ledger.IngestRow{okRow(2, "A-2"), okRow(3, "A-bad"), okRow(4, "fresh")})
	if want := []ledger.State{ledger.StateConflict, ledger.StateQueued, ledger.StateQueued}; !reflect.DeepEqual(states, want) {
		t.Errorf("a new batch reusing the archived referenceids: %v, want %v", states, want)
	}
	if m := getRow(t, l, nb.Seq, 2).Message; !strings.Contains(m, "batch old line 2") {
		t.Errorf("conflict message %q does not name batch old line 2", m)
	}
}
