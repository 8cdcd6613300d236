package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// TestWritersSharingRowsDoNotDeadlock: processes sharing a batch each
// settle every unsettled row at the end, so their group commits change
// the same rows at once. Two writers recording enquiries over the same
// rows in opposite orders must both go on: a deadlock victim's writer
// fails, and its run stops with a ledger error.
func TestWritersSharingRowsDoNotDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	const n = 1500
	first := ledger.NewOwner("first")
	rows := make([]ledger.IngestRow, n)
	for i := range rows {
		rows[i] = sendable(i+2, fmt.Sprintf("ref-%d", i))
	}
	b := recorded(t, s, "shared", first, time.Minute, rows...)
	// Every row sent and its answer lost.
	w, err := s.NewWriter(ctx, b.Seq, first)
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := w.(ledger.Claimer).Claim(ctx, n)
	if err != nil || len(claimed) != n {
		t.Fatalf("Claim = %d rows, %v; want %d", len(claimed), err, n)
	}
	for _, r := range claimed {
		if err := w.Record(ledger.Update{Line: r.Line, To: ledger.StateUnknown, Code: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	const rounds = 3
	a, z := ledger.NewOwner("a"), ledger.NewOwner("z")
	for _, o := range []ledger.Owner{a, z} {
		if _, err := s.Acquire(ctx, ledger.NewBatch{ID: b.ID}, o, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, o := range []ledger.Owner{a, z} {
			w, err := s.NewWriter(ctx, b.Seq, o)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer w.Close()
				<-start
				for k := 0; k < n; k++ {
					line := 2 + k
					if i == 1 {
						line = 2 + n - 1 - k
					}
					if err := w.Record(ledger.Update{Line: line, To: ledger.StatePending, Code: -1,
						Attempt: &ledger.Attempt{Kind: "status", At: time.Now(), Class: "pending"}}); err != nil {
						errs[i] = err
						return
					}
				}
				errs[i] = w.Flush(ctx)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: writer %d failed: %v", round, i, err)
			}
		}
	}
	c, err := s.Counts(ctx, b.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c[ledger.StatePending].Rows != n {
		t.Errorf("pending rows = %d, want %d (counts %v)", c[ledger.StatePending].Rows, n, c)
	}
	var enquiries int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM attempts WHERE batch = $1 AND kind = 'status'`, b.Seq).Scan(&enquiries); err != nil {
		t.Fatal(err)
	}
	if want := 2 * rounds * n; enquiries != want {
		t.Errorf("enquiries recorded = %d, want %d: a group that ran again recorded its attempts twice, or not at all", enquiries, want)
	}
}
