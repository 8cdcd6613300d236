package ledgertest

import (
	"context"
	"errors"
	"maps"
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
	if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz", counts(t, l, b.Seq)); !errors.Is(err, ledger.ErrNotFinal) {
		t.Fatalf("Archive with a row pending: %v, want ErrNotFinal", err)
	}
	record(t, w, ledger.Update{Line: 5, To: ledger.StateSuccess, Code: -1})
	closeWriter(t, w)
	before := counts(t, l, b.Seq)
	if err := l.Archive(ctx, b.Seq, ledger.NewOwner("stranger"), "old.ledger.gz", before); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Archive without the lease: %v, want ErrLeaseLost", err)
	}
	// What the archive holds must be what the ledger holds.
	stale := maps.Clone(before)
	stale[ledger.StateSuccess] = ledger.Tally{Rows: 3, Paise: 200 + 400 + 500 + 1} // a row corrected meanwhile, say
	if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz", stale); !errors.Is(err, ledger.ErrChanged) {
		t.Errorf("Archive with counts other than the ledger's: %v, want ErrChanged", err)
	}
	if l.Shared() {
		// Another process at the batch: it is not archived under it.
		other := ledger.NewOwner("other")
		acquire(t, l, ledger.NewBatch{ID: "old"}, other)
		if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz", before); !errors.Is(err, ledger.ErrBatchLocked) {
			t.Errorf("Archive with another process at the batch: %v, want ErrBatchLocked", err)
		}
		if err := l.Release(ctx, "old", other); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Archive(ctx, b.Seq, testOwner, "old.ledger.gz", before); err != nil {
		t.Fatalf("Archive: %v", err)
	}
	if err := l.Correct(ctx, b.Seq, testOwner, ledger.Correction{Line: 3, From: ledger.StateFailed, To: ledger.StateSuccess}); !errors.Is(err, ledger.ErrBatchArchived) {
		t.Errorf("Correct in an archived batch: %v, want ErrBatchArchived", err)
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

	// Copied to another ledger, what is left of it goes along: its
	// referenceids stay held there too, and it is not run again there.
	dst := s.open(t, Options{})
	res, err := ledger.Copy(ctx, l, dst, ledger.CopyOptions{IDs: []string{"old"}})
	if err != nil {
		t.Fatalf("Copy of an archived batch: %v", err)
	}
	if len(res.Batches) != 1 || res.Batches[0].Archived != "old.ledger.gz" {
		t.Errorf("Copy = %+v, want the archived batch, naming its archive", res)
	}
	cb, err := dst.Batch(ctx, "old")
	if err != nil || cb.Archived != "old.ledger.gz" || !reflect.DeepEqual(counts(t, dst, cb.Seq), before) {
		t.Errorf("the copy: %+v, %v, counts %v; want archived, as the source", cb, err, counts(t, dst, cb.Seq))
	}
	_, states = ingest(t, dst, "new2", []ledger.IngestRow{okRow(2, "A-3")})
	if states[0] != ledger.StateConflict {
		t.Errorf("an archived referenceid reused in the copy: %s, want conflict", states[0])
	}
	if _, err := dst.Acquire(ctx, ledger.NewBatch{ID: "old"}, ledger.NewOwner("again"), testTTL); !errors.Is(err, ledger.ErrBatchArchived) {
		t.Errorf("Acquire of the copied archived batch: %v, want ErrBatchArchived", err)
	}
}
