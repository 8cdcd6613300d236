package batch

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// writeRows writes a CSV of n valid rows, then the extra lines given.
func writeRows(t *testing.T, n int, extra ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid\n")
	for i := range n {
		fmt.Fprintf(&b, "%d,CA%07d,%d.%02d,R-%d\n", 1+i%5, i, 10+i%90, i%100, i)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(t.TempDir(), "rows.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func openLedger(t *testing.T) ledger.Store {
	t.Helper()
	l, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "l.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func ingestOpts(c Controls) IngestOptions {
	return IngestOptions{Reader: ReaderOptions{RegistrationID: "REG-1", Latitude: "28.6", Longitude: "77.2"}, Controls: c, Owner: ledger.NewOwner("test"), LeaseTTL: time.Minute}
}

// A file of several ledger transactions' worth of rows (the ledger commits
// every 8192) goes in whole, with its bad and repeated rows recorded.
func TestIngestLargeFile(t *testing.T) {
	t.Parallel()
	const n = 10_000
	path := writeRows(t, n, "1,CAX,abc,BAD-1", "2,CAY,5.00,R-7") // a bad amount; R-7 repeated
	l := openLedger(t)
	res, err := Ingest(context.Background(), l, path, ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n+2 || res.Queued != n || res.Rejected != 2 || res.Conflicts != 0 {
		t.Errorf("result %+v, want %d rows, %d queued, 2 rejected", res, n+2, n)
	}
	if !res.Batch.Ready || res.Batch.RowsTotal != n+2 {
		t.Errorf("batch %+v, want ready with %d rows", res.Batch, n+2)
	}
	c, err := l.Counts(context.Background(), res.Batch.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c[ledger.StateQueued].Rows != n || c[ledger.StateRejected].Rows != 2 || c[ledger.StateQueued].Paise != res.Paise {
		t.Errorf("ledger counts %v, want %d queued (%d paise) and 2 rejected", c, n, res.Paise)
	}
}

// A file refused after thousands of rows were stored leaves nothing behind.
func TestIngestRefusedLeavesNothing(t *testing.T) {
	t.Parallel()
	path := writeRows(t, 10_000, "3,CAZ,999999.00,BIG-1")
	l := openLedger(t)
	c := NoControls()
	c.MaxAmountPaise = 100_000_00
	_, err := Ingest(context.Background(), l, path, ingestOpts(c))
	var ce *ControlError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "line(s) 10002") {
		t.Fatalf("Ingest = %v, want a control error naming line 20002", err)
	}
	if _, err := l.Batch(context.Background(), ""); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("after a refused file: Batch = %v, want ErrNoBatch", err)
	}
}

// A process waiting to join a batch says each new reason once, and the
// same one again each stillWaitingEvery, with how long it has waited: a
// wait of many minutes (a frozen recording another role may not end)
// must not read as a hang.
func TestWaitingToJoinSaysItStillWaits(t *testing.T) {
	start := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
	w := waitSayer{since: start}
	type said struct {
		at   time.Duration
		why  string
		want string // "" nothing
	}
	for _, c := range []said{
		{5 * time.Second, "busy", "another process holds this batch: waiting to join it"},
		{10 * time.Second, "busy", ""},
		{50 * time.Second, "busy: may not end it", "another process holds this batch: waiting to join it"},
		{64 * time.Second, "busy", ""}, // a minute from the last thing said, not the first
		{110 * time.Second, "busy", "still waiting to join this batch: another process holds it"},
		{115 * time.Second, "busy", ""},
		{171 * time.Second, "busy: may not end it", "still waiting to join this batch: another process holds it"},
	} {
		msg, waited, ok := w.say(start.Add(c.at), c.why)
		if ok != (c.want != "") || msg != c.want {
			t.Errorf("at %s (%s): said %q (%v), want %q", c.at, c.why, msg, ok, c.want)
		}
		if ok && waited != c.at {
			t.Errorf("at %s: waited %s, want %s", c.at, waited, c.at)
		}
	}
}

// Before a file is recorded, the batches whose recording was killed part
// way are dropped (clearAbandoned); the rest are left as they are, and
// never fail the run (a review of that change):
//
// An archived batch being copied in (or whose copy was killed) is not
// ready, with its archive named: every new file's run failed on it.
func TestRecordingLeavesAnArchiveBeingCopiedIn(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t)
	im, err := l.ImportBatch(ctx, ledger.Batch{ID: "old", ContentHash: "h-old", Source: "old.csv", Ready: true,
		Archived: "jan.ledger.gz", Created: time.Now(), RowsTotal: 1})
	if err != nil {
		t.Fatal(err)
	}
	_ = im // the copy is still going, or was killed here
	if _, err = Ingest(ctx, l, writeRows(t, 3), ingestOpts(NoControls())); err != nil {
		t.Errorf("a new file is refused because another batch is being copied in: %v", err)
	}
}

// raceStore runs hook once, right after Batches lists the ledger: the
// moment another process changes a batch clearAbandoned is about to take.
type raceStore struct {
	ledger.Store
	hook func()
}

func (r *raceStore) Batches(ctx context.Context) ([]ledger.Batch, error) {
	bs, err := r.Store.Batches(ctx)
	if r.hook != nil {
		h := r.hook
		r.hook = nil
		h()
	}
	return bs, err
}

// A recording another process aborts (its control totals) between the
// listing and the take-over is not made anew, an empty batch with no
// source and no header left for good.
func TestRecordingMakesNoBatchAnotherDropped(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t)
	rs := recordingMeanwhile(t, l, func(in ledger.Ingest) error {
		return in.Abort(ctx) // A's file fails its control totals: the batch is deleted
	})
	o := ingestOpts(NoControls())
	o.Owner = ledger.NewOwner("B")
	if _, err := Ingest(ctx, rs, writeRows(t, 3), o); err != nil {
		t.Errorf("B's run: %v", err)
	}
	bs, err := l.Batches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.ID == "X" {
			t.Errorf("batch X, deleted by its own run, is back: source %q, header %v, ready %v", b.Source, b.Header, b.Ready)
		}
	}
}

// recordingMeanwhile has process A take batch X to record it, and returns
// l wrapped so that, once Ingest has listed the batches, A's recording
// ends by end (before the take-over Ingest then tries).
func recordingMeanwhile(t *testing.T, l ledger.Store, end func(ledger.Ingest) error) *raceStore {
	t.Helper()
	ctx := context.Background()
	a := ledger.NewOwner("A")
	x, err := l.Acquire(ctx, ledger.NewBatch{ID: "X", ContentHash: "hx", Source: "x.csv", Header: []string{"operator", "canumber", "amount", "referenceid"}}, a, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rs := &raceStore{Store: l}
	rs.hook = func() {
		in, err := l.BeginIngest(ctx, x, a, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := end(in); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, "X", a); err != nil && !errors.Is(err, ledger.ErrNoBatch) {
			t.Fatal(err)
		}
	}
	return rs
}

// A dry run that finishes (and gives its lease back) between the listing
// and the take-over is kept, and another file's run goes on.
func TestRecordingKeepsABatchReadyMeanwhile(t *testing.T) {
	ctx := context.Background()
	l := openLedger(t)
	rs := recordingMeanwhile(t, l, func(in ledger.Ingest) error {
		if _, err := in.AddMany(ctx, []ledger.IngestRow{{Line: 2, ReferenceID: "XR-1", Operator: 1, CANumber: "C", AmountPaise: 100, Request: []byte("{}")}}); err != nil {
			return err
		}
		return in.Finish(ctx)
	})
	o := ingestOpts(NoControls())
	o.Owner = ledger.NewOwner("B")
	if _, err := Ingest(ctx, rs, writeRows(t, 3), o); err != nil {
		t.Errorf("another file's run fails: %v", err)
	}
	if b, err := l.Batch(ctx, "X"); err != nil || !b.Ready || b.RowsTotal != 1 {
		t.Errorf("the batch that became ready: %+v (%v), want it kept, ready, its row with it", b, err)
	}
}

// A ledger copy killed part way leaves a batch of paid rows, not ready:
// it is kept, and a row reusing one of their referenceids is a conflict,
// not queued to be paid again.
func TestRecordingKeepsACopyOfPaidRowsCutShort(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	l, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	im, err := l.ImportBatch(ctx, ledger.Batch{ID: "paid", ContentHash: "h-paid", Source: "paid.csv", Ready: true, Created: time.Now(), RowsTotal: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Rows(ctx, []ledger.Row{{Line: 2, ReferenceID: "R-1", Operator: 1, CANumber: "CA0000001", AmountPaise: 1101,
		Request: []byte(`{"x":1}`), State: ledger.StateSuccess, Attempts: 1, FirstSent: time.Now(), Updated: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	// kill -9 of the copy: its pid is gone.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE batches SET lease_pid = 999999 WHERE id = 'paid'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var logs strings.Builder
	o := ingestOpts(NoControls())
	o.Log = slog.New(slog.NewTextHandler(&logs, nil))
	res, err := Ingest(ctx, l, writeRows(t, 3), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 1 || strings.Contains(logs.String(), "dropped a batch") {
		t.Errorf("R-1, paid in batch paid, is queued to be sent again (conflicts %d)\n%s", res.Conflicts, logs.String())
	}
	// Kept, and said, with the way out: this file's row reusing its
	// referenceid is a conflict until the copy is run again.
	if !strings.Contains(logs.String(), "by a copy that stopped part way holds rows that were sent: it is kept") ||
		!strings.Contains(logs.String(), "run the same aopbatch ledger copy again") || !strings.Contains(logs.String(), "batch=paid") {
		t.Errorf("the batch kept is not named, with the way out:\n%s", logs.String())
	}
}

// A file refused because every row's referenceid is blank (what aopbatch
// export writes) says how to send it: new referenceids, or
// --generate-refs with a named batch. One refused for other faults does
// not.
func TestRejectRateNamesGenerateRefsForBlankReferenceids(t *testing.T) {
	t.Parallel()
	c := NoControls()
	c.MaxRejectRate = 0.2
	const hint = "--generate-refs --batch NEW-ID"

	blank := filepath.Join(t.TempDir(), "exported.csv")
	if err := os.WriteFile(blank, []byte("operator,canumber,amount,referenceid\n1,CA1,10.00,\n2,CA2,20.00,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Ingest(context.Background(), openLedger(t), blank, ingestOpts(c))
	var ce *ControlError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "every one of them has a blank referenceid") || !strings.Contains(err.Error(), hint) {
		t.Errorf("blank referenceids: Ingest = %v, want a control error naming %s", err, hint)
	}

	mixed := filepath.Join(t.TempDir(), "mixed.csv")
	if err := os.WriteFile(mixed, []byte("operator,canumber,amount,referenceid\n1,CA1,10.00,\n2,CA2,abc,R-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Ingest(context.Background(), openLedger(t), mixed, ingestOpts(c))
	if !errors.As(err, &ce) || strings.Contains(err.Error(), hint) {
		t.Errorf("a bad amount too: Ingest = %v, want a control error without the --generate-refs hint", err)
	}
}
