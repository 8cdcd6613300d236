package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// holdLease makes testOwner the holder of batch seq's lease, as a run is
// before it writes.
func holdLease(t *testing.T, l *Store, seq int64) {
	t.Helper()
	bs, err := l.Batches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Seq == seq {
			acquire(t, l, ledger.NewBatch{ID: b.ID}, testOwner)
			return
		}
	}
	t.Fatalf("no batch %d", seq)
}

// newWriter starts a writer for seq under testOwner's lease and closes it
// when the test ends.
func newWriter(t *testing.T, l *Store, seq int64) ledger.Writer {
	t.Helper()
	holdLease(t, l, seq)
	return writerOf(t, l, seq, testOwner)
}

// writerOf starts a writer for seq under o, whatever the lease, and closes
// it when the test ends (a second Close is harmless).
func writerOf(t *testing.T, l *Store, seq int64, o ledger.Owner) ledger.Writer {
	t.Helper()
	w, err := l.NewWriter(context.Background(), seq, o)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func record(t *testing.T, w ledger.Writer, u ledger.Update) {
	t.Helper()
	if err := w.Record(u); err != nil {
		t.Fatalf("Record(%+v): %v", u, err)
	}
}

func flush(t *testing.T, w ledger.Writer) {
	t.Helper()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func dispatch(t *testing.T, w ledger.Writer, lines ...int) []int {
	t.Helper()
	got, err := w.Dispatch(context.Background(), lines)
	if err != nil {
		t.Fatalf("Dispatch(%v): %v", lines, err)
	}
	return got
}

// testOwner is the lease holder newWriter writes under.
var testOwner = ledger.NewOwner("test")

// seedRows adds n queued rows (lines 2..n+1, amount 100*line paise) to a new
// ready batch in one statement: much cheaper than Ingest, for tests of what
// comes after ingest.
func seedRows(t *testing.T, l *Store, id string, n int) ledger.Batch {
	t.Helper()
	ctx := context.Background()
	o := ledger.NewOwner("seed")
	b := acquire(t, l, ledger.NewBatch{ID: id, ContentHash: "h"}, o)
	db := rawDB(t, l.Path())
	if _, err := db.Exec(`WITH RECURSIVE s(line) AS (SELECT 2 UNION ALL SELECT line + 1 FROM s WHERE line <= ?)
		INSERT INTO rows (batch, line, referenceid, operator, canumber, amount_paise, request, state, updated_ms)
		SELECT ?, line, ? || '-' || line, 1 + line % 3, 'CA' || line, 100 * line, '{}', 'queued', 0 FROM s`,
		n, b.Seq, id); err != nil {
		t.Fatalf("seed rows: %v", err)
	}
	if _, err := db.Exec(`UPDATE batches SET status = 'ready', rows_total = ? WHERE seq = ?`, n, b.Seq); err != nil {
		t.Fatalf("mark ready: %v", err)
	}
	if err := l.Release(ctx, id, o); err != nil {
		t.Fatal(err)
	}
	b.Ready, b.RowsTotal = true, int64(n)
	return b
}

// A row this writer dispatched goes back to queued or held only from
// queued: if anything else moved it meanwhile, "never sent" must not
// overwrite that, even with the lease held.
func TestDispatchedRowRequeuedOnlyFromQueued(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	b := seedRows(t, l, "s", 3)
	w := newWriter(t, l, b.Seq)
	dispatch(t, w, 2, 3)
	if _, err := rawDB(t, l.Path()).Exec(`UPDATE rows SET state = 'inflight' WHERE batch = ? AND line IN (2, 3)`, b.Seq); err != nil {
		t.Fatal(err)
	}
	record(t, w, ledger.Update{Line: 2, To: ledger.StateQueued, Code: -1})
	record(t, w, ledger.Update{Line: 3, To: ledger.StateHeld, Code: -1})
	flush(t, w)
	if err := w.Refused(); !errors.Is(err, ledger.ErrTransition) {
		t.Errorf("Refused = %v, want ErrTransition", err)
	}
	for _, line := range []int{2, 3} {
		if s := getRow(t, l, b.Seq, line).State; s != ledger.StateInflight {
			t.Errorf("line %d: %s, want inflight left alone", line, s)
		}
	}
}
