package ledgertest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Copy moves a batch into another ledger as it was: every row, every
// attempt, counts and sums; it leaves a batch the destination holds the
// same as it is, refuses one it holds otherwise and a
// batch with rows in flight, and leaves nothing behind when it fails.
func (s suite) testCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	src := s.open(t, Options{Now: c.now})
	b, _ := mixedBatch(t, src)
	// mixedBatch leaves rows in flight: settle them, with attempts.
	w := newWriter(t, src, b.Seq)
	var lines []int
	page, err := src.Page(ctx, b.Seq, ledger.StateInflight, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range page {
		lines = append(lines, r.Line)
		record(t, w, ledger.Update{Line: r.Line, To: ledger.StatePending, Code: 0, Message: "accepted", TxnID: "TX" + r.ReferenceID,
			Attempt: &ledger.Attempt{Kind: "recharge", At: c.now(), Latency: 120 * time.Millisecond, HTTPStatus: 200, Code: 0, Class: "pending", Message: "accepted"}})
	}
	closeWriter(t, w)
	if len(lines) == 0 {
		t.Fatal("mixedBatch left nothing in flight to settle")
	}

	dst := s.open(t, Options{Now: c.now})
	res, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if len(res.Batches) != 1 || res.Rows != 30 {
		t.Errorf("Copy = %+v, want 1 batch of 30 rows", res)
	}
	nb, err := dst.Batch(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !nb.Ready || nb.RowsTotal != b.RowsTotal || nb.ContentHash != b.ContentHash || !nb.Created.Equal(b.Created) {
		t.Errorf("copied batch %+v, want as %+v", nb, b)
	}
	rowsOf := func(l ledger.Store, seq int64) []ledger.Row {
		var out []ledger.Row
		if err := l.EachRow(ctx, seq, func(r *ledger.Row) error {
			row := *r
			row.Batch = 0
			out = append(out, row)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := rowsOf(dst, nb.Seq), rowsOf(src, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("rows differ after Copy:\n got %+v\nwant %+v", got, want)
	}
	if got, want := attempts(t, dst, nb.Seq), attempts(t, src, b.Seq); !reflect.DeepEqual(got, want) || len(got) == 0 {
		t.Errorf("attempts differ after Copy:\n got %+v\nwant %+v", got, want)
	}
	if got, want := counts(t, dst, nb.Seq), counts(t, src, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("counts differ: %v, want %v", got, want)
	}
	// The copy's referenceids are held in the destination too.
	_, states := ingest(t, dst, "after", []ledger.IngestRow{okRow(2, "mx-4")})
	if states[0] != ledger.StateConflict {
		t.Errorf("a referenceid of the copied batch, reused: %s, want conflict", states[0])
	}

	// Copied again, the same, it is left as it is (a copy run again after
	// one that stopped part way); changed in the source, it is refused.
	if res, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}}); err != nil || len(res.Batches) != 0 ||
		!reflect.DeepEqual(res.Already, []string{b.ID}) {
		t.Errorf("copying it again: %+v, %v; want it left as it is (Already)", res, err)
	}
	sw := newWriter(t, src, b.Seq)
	record(t, sw, ledger.Update{Line: lines[0], To: ledger.StateSuccess, Code: 0, Message: "settled since"})
	closeWriter(t, sw)
	// The refusal says how the two differ and what to do: which ledger
	// is the record is a person's call.
	if _, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}}); !errors.Is(err, ledger.ErrBatchExists) ||
		!strings.Contains(err.Error(), "with its rows in other states than in "+src.Location()) ||
		!strings.Contains(err.Error(), "aopbatch status --batch "+b.ID+" --ledger each") {
		t.Errorf("copying it again, changed in the source: %v, want ErrBatchExists saying how the two differ", err)
	}

	// A batch with a row in flight is refused, and nothing of it stays.
	busy := seedRows(t, src, "busy", 3)
	bw := newWriter(t, src, busy.Seq)
	dispatch(t, bw, 2)
	if _, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{"busy"}}); err == nil {
		t.Error("Copy of a batch with a row in flight succeeded")
	}
	if _, err := dst.Batch(ctx, "busy"); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("after a refused copy: Batch(busy) = %v, want ErrNoBatch", err)
	}
	record(t, bw, ledger.Update{Line: 2, To: ledger.StateQueued, Code: -1})
	closeWriter(t, bw)

	// A batch whose referenceid the destination holds fails and is removed.
	clash := s.open(t, Options{Now: c.now})
	ingest(t, clash, "mine", []ledger.IngestRow{okRow(2, "mx-4")})
	if _, err := ledger.Copy(ctx, src, clash, ledger.CopyOptions{IDs: []string{b.ID}}); err == nil {
		t.Error("Copy into a ledger holding one of its referenceids succeeded")
	}
	if _, err := clash.Batch(ctx, b.ID); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("after a failed copy: Batch = %v, want ErrNoBatch", err)
	}
}

// CopyCutShort: a copy killed part way leaves the batch not ready, its
// rows (a paid one among them) held. While the copy's lease lives it is
// not touched; once it has run out, copying again replaces it with the
// whole batch, as the source holds it: the way out of a copy cut short,
// which no run of its file may record over and ledger drop refuses.
func (s suite) testCopyCutShort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	src := s.open(t, Options{Now: c.now})
	b := seedRows(t, src, "cut", 3)
	rows := payLine2(t, src, b, c)

	dst := s.open(t, Options{Now: c.now})
	cutShort(t, dst, b, rows[:2])
	if _, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}}); !errors.Is(err, ledger.ErrBatchExists) {
		t.Errorf("copying again while the first copy's lease lives: %v, want ErrBatchExists", err)
	}
	c.advance(11 * time.Minute)
	res, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}})
	if err != nil || len(res.Batches) != 1 || res.Rows != 3 {
		t.Fatalf("copying again once the cut-short copy's lease ran out: %+v, %v; want the batch's 3 rows copied", res, err)
	}
	nb, err := dst.Batch(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := counts(t, dst, nb.Seq), counts(t, src, b.Seq); !nb.Ready || !reflect.DeepEqual(got, want) {
		t.Errorf("after copying again: ready %v, counts %v; want ready, %v", nb.Ready, got, want)
	}
	if r := getRow(t, dst, nb.Seq, 2); r.State != ledger.StateSuccess {
		t.Errorf("the paid row after copying again: %s, want success", r.State)
	}
	if n := len(attempts(t, dst, nb.Seq)); n != 1 {
		t.Errorf("attempts after copying again: %d, want the source's 1", n)
	}
	// Its referenceids are held again.
	_, states := ingest(t, dst, "reuse", []ledger.IngestRow{okRow(2, rows[0].ReferenceID)})
	if states[0] != ledger.StateConflict {
		t.Errorf("the paid row's referenceid reused after copying again: %s, want conflict", states[0])
	}
}

// CopyCutShortOlderSource: a copy cut short left the batch not ready here
// with a paid row. Copying it again from another ledger that holds the
// same file's batch in an older state (a backup taken before the row was
// paid) must not replace it: the paid row would come back queued, and a
// run would send it again with no status enquiry first. The copy is
// refused, and the paid row kept.
func (s suite) testCopyCutShortOlderSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	old := s.open(t, Options{Now: c.now})
	ob := seedRows(t, old, "cut", 3) // the backup: nothing sent yet
	src := s.open(t, Options{Now: c.now})
	b := seedRows(t, src, "cut", 3)
	if ob.ContentHash != b.ContentHash {
		t.Fatalf("the two ledgers' batches differ in content: %q, %q", ob.ContentHash, b.ContentHash)
	}
	c.advance(time.Minute)
	rows := payLine2(t, src, b, c)

	dst := s.open(t, Options{Now: c.now})
	cutShort(t, dst, b, rows[:2])
	c.advance(11 * time.Minute)
	if _, err := ledger.Copy(ctx, old, dst, ledger.CopyOptions{IDs: []string{b.ID}}); !errors.Is(err, ledger.ErrBatchExists) {
		t.Errorf("copying from an older ledger over a copy cut short holding a paid row: %v, want ErrBatchExists", err)
	}
	nb, err := dst.Batch(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := getRow(t, dst, nb.Seq, 2); r.State != ledger.StateSuccess || nb.Ready {
		t.Errorf("the paid row after copying from an older ledger: %s (batch ready %v), want success, not ready", r.State, nb.Ready)
	}
	// The ledger that holds it whole still replaces it.
	if _, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}}); err != nil {
		t.Errorf("copying again from the source of the copy cut short: %v", err)
	}
}

// CopyCutShortHoldsItsRefs: a copy run again over a batch a copy cut
// short left writes each line over the old one in one transaction, so
// the paid rows' referenceids are never free: a file reusing one while
// the copy runs again is a conflict, not a payment. A copy run again and
// stopped keeps the rows it found.
func (s suite) testCopyCutShortHoldsItsRefs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	src := s.open(t, Options{Now: c.now})
	b := seedRows(t, src, "cut", 3)
	rows := payLine2(t, src, b, c)
	paid := rows[0].ReferenceID

	dst := s.open(t, Options{Now: c.now})
	if err := cutShort(t, dst, b, rows).Attempts(ctx, attempts(t, src, b.Seq)); err != nil { // then the copy is killed
		t.Fatal(err)
	}
	c.advance(11 * time.Minute)

	// Copied again, and stopped after its first rows: what it found stays,
	// the attempts that explain the paid row included.
	again, err := dst.ImportBatch(ctx, b)
	if err != nil {
		t.Fatalf("copying again once the cut-short copy's lease ran out: %v", err)
	}
	if _, st := ingest(t, dst, "reuse-1", []ledger.IngestRow{okRow(2, paid)}); st[0] != ledger.StateConflict {
		t.Errorf("the paid referenceid reused while the copy runs again: %s, want conflict", st[0])
	}
	if err := again.Rows(ctx, rows[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := again.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	nb, err := dst.Batch(ctx, b.ID)
	if err != nil {
		t.Fatalf("the batch after a copy run again was stopped: %v, want it kept", err)
	}
	if r := getRow(t, dst, nb.Seq, 2); nb.Ready || r.State != ledger.StateSuccess {
		t.Errorf("after a copy run again was stopped: ready %v, paid row %s; want not ready, success", nb.Ready, r.State)
	}
	if n := len(attempts(t, dst, nb.Seq)); n != 1 {
		t.Errorf("attempts after a copy run again was stopped: %d, want the 1 the first copy brought", n)
	}
	if _, st := ingest(t, dst, "reuse-2", []ledger.IngestRow{okRow(2, paid)}); st[0] != ledger.StateConflict {
		t.Errorf("the paid referenceid reused after the copy run again was stopped: %s, want conflict", st[0])
	}

	// Copied once more, whole: the batch as the source holds it.
	res, err := ledger.Copy(ctx, src, dst, ledger.CopyOptions{IDs: []string{b.ID}})
	if err != nil || res.Rows != 3 {
		t.Fatalf("copying once more: %+v, %v; want its 3 rows", res, err)
	}
	if got, want := counts(t, dst, nb.Seq), counts(t, src, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("counts after copying once more: %v, want %v", got, want)
	}
	if n := len(attempts(t, dst, nb.Seq)); n != 1 {
		t.Errorf("attempts after copying once more: %d, want the source's 1, once", n)
	}
}

// payLine2 records line 2 of batch b in src paid, with its attempt, gives
// the batch's lease back, and returns its rows as src holds them: a
// source for the copies cut short above.
func payLine2(t *testing.T, src ledger.Store, b ledger.Batch, c *clock) []ledger.Row {
	t.Helper()
	ctx := context.Background()
	w := newWriter(t, src, b.Seq)
	dispatch(t, w, 2)
	record(t, w, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 1, Message: "paid",
		Attempt: &ledger.Attempt{Kind: "recharge", At: c.now(), HTTPStatus: 200, Class: "success", Message: "paid"}})
	closeWriter(t, w)
	if err := src.Release(ctx, b.ID, testOwner); err != nil {
		t.Fatal(err)
	}
	var rows []ledger.Row
	if err := src.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		rows = append(rows, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

// cutShort starts a copy of batch b into dst and writes rows, then leaves
// it, as a copy killed there does; its import is returned for more.
func cutShort(t *testing.T, dst ledger.Store, b ledger.Batch, rows []ledger.Row) ledger.BatchImport {
	t.Helper()
	im, err := dst.ImportBatch(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Rows(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	return im
}
