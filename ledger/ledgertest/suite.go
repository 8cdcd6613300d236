// Package ledgertest is the conformance suite of aopbatch's ledger stores:
// every behaviour the engine, the reports and the commands rely on,
// specified once and proved by each store (as River's riverdrivertest is
// run by each of its drivers). A store's tests call Exercise with a way to
// make an empty database.
package ledgertest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// DB is one empty database of the store under test.
type DB interface {
	// Open opens a new handle on the database, as another process would,
	// and closes it when the test ends.
	Open(t *testing.T, o Options) ledger.Store
	// Check fails the test if the database's own integrity checks fail.
	Check(t *testing.T)
}

// Options tune a handle.
type Options struct {
	// Now is the handle's clock; nil means time.Now.
	Now func() time.Time
}

// Exercise runs the suite against the store newDB makes databases of. Each
// test makes its own database, so they run in parallel.
func Exercise(t *testing.T, newDB func(t *testing.T) DB) {
	s := suite{newDB: newDB}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Acquire", s.testAcquire},
		{"IngestQueued", s.testIngestQueued},
		{"IngestDuplicateInBatch", s.testIngestDuplicateInBatch},
		{"IngestConflict", s.testIngestConflict},
		{"IngestRetry", s.testIngestRetry},
		{"IngestProblemRows", s.testIngestProblemRows},
		{"IngestChunks", s.testIngestChunks},
		{"IngestAbort", s.testIngestAbort},
		{"IngestLeaseLost", s.testIngestLeaseLost},
		{"IngestAbortAfterFinish", s.testIngestAbortAfterFinish},
		{"ClearRowsReady", s.testClearRowsReady},
		{"AddManyMatchesOneByOne", s.testAddManyMatchesOneByOne},
		{"AddManyNeedsBody", s.testAddManyNeedsBody},
		{"Page", s.testPage},
		{"Queued", s.testQueued},
		{"CountsAnyEachRow", s.testCountsAnyEachRow},
		{"EachRowInFlightSince", s.testEachRowInFlightSince},
		{"RecoverInflight", s.testRecoverInflight},
		{"Move", s.testMove},
		{"BatchResolve", s.testBatchResolve},
		{"BatchesWithContent", s.testBatchesWithContent},
		{"Copy", s.testCopy},
		{"CopyCutShort", s.testCopyCutShort},
		{"CopyCutShortHoldsItsRefs", s.testCopyCutShortHoldsItsRefs},
		{"CopyCutShortOlderSource", s.testCopyCutShortOlderSource},
		{"Correct", s.testCorrect},
		{"AttemptsNameTheirProcess", s.testAttemptsNameTheirProcess},
		{"Archive", s.testArchive},
		{"Claim", s.testClaim},
		{"DropUnsent", s.testDropUnsent},
		{"WriterSuccess", s.testWriterSuccess},
		{"WriterLogsEveryAttemptOfAGroupInOrder", s.testWriterLogsEveryAttemptOfAGroupInOrder},
		{"WriterAttemptOnly", s.testWriterAttemptOnly},
		{"WriterMarkInflightRefused", s.testWriterMarkInflightRefused},
		{"WriterRecordRefused", s.testWriterRecordRefused},
		{"WriterIfSends", s.testWriterIfSends},
		{"WriterIfSendsAcrossProcesses", s.testWriterIfSendsAcrossProcesses},
		{"WriterMootMoveAcrossProcesses", s.testWriterMootMoveAcrossProcesses},
		{"WriterRefusedMoveLogsTheRowsState", s.testWriterRefusedMoveLogsTheRowsState},
		{"WriterFlushVisibility", s.testWriterFlushVisibility},
		{"WriterConcurrent", s.testWriterConcurrent},
		{"WriterMarkInflightCanceled", s.testWriterMarkInflightCanceled},
		{"WriterDispatch", s.testWriterDispatch},
		{"RecoverDispatched", s.testRecoverDispatched},
		{"StaleWriterWritesNothingAfterTakeover", s.testStaleWriterWritesNothingAfterTakeover},
		{"StaleRequeueLeavesNewHoldersRowAlone", s.testStaleRequeueLeavesNewHoldersRowAlone},
		{"WriterOfAnOwnerWithoutTheLease", s.testWriterOfAnOwnerWithoutTheLease},
		{"StaleCloseKeepsNewHoldersDispatch", s.testStaleCloseKeepsNewHoldersDispatch},
	} {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	newDB func(t *testing.T) DB
}

// open opens a handle on a new, empty database.
func (s suite) open(t *testing.T, o Options) ledger.Store {
	t.Helper()
	return s.newDB(t).Open(t, o)
}

// TTL is the lease the suite's runs take.
const testTTL = time.Minute

// bigIngest is more rows than any store is expected to write in one
// transaction or statement, so ingests cross the stores' chunk boundaries
// (SQLite: 8,192 rows a commit, 128 a statement).
const bigIngest = 8192 + 5

// addChunk is a statement's worth of rows in the SQLite store: tests mix
// rows across that boundary.
const addChunk = 128

// clock is a settable clock for Options.Now, safe for concurrent use.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC).UnixMilli())
	return c
}

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// acquire takes the lease on a new or existing batch, failing the test on error.
func acquire(t *testing.T, l ledger.Store, nb ledger.NewBatch, o ledger.Owner) ledger.Batch {
	t.Helper()
	b, err := l.Acquire(context.Background(), nb, o, testTTL)
	if err != nil {
		t.Fatalf("Acquire(%s, %s): %v", nb.ID, o.ID, err)
	}
	return b
}

// okRow is a valid row; its amount and account are derived from the line
// unless the caller overrides them.
func okRow(line int, ref string) ledger.IngestRow {
	return ledger.IngestRow{
		Line:        line,
		ReferenceID: ref,
		Operator:    int64(1 + line%3),
		CANumber:    fmt.Sprintf("CA%06d", line),
		AmountPaise: int64(100 * line),
		Request:     []byte(fmt.Sprintf(`{"referenceid":%q,"amount":%d}`, ref, line)),
	}
}

// rowsFor builds n valid rows, lines 2..n+1 (line 1 is the header), with
// referenceids prefixed by prefix.
func rowsFor(prefix string, n int) []ledger.IngestRow {
	rs := make([]ledger.IngestRow, n)
	for i := range rs {
		rs[i] = okRow(i+2, fmt.Sprintf("%s-%d", prefix, i+2))
	}
	return rs
}

// add records one row, as AddMany does for a slice of one.
func add(ctx context.Context, in ledger.Ingest, r ledger.IngestRow) (ledger.State, string, error) {
	out, err := in.AddMany(ctx, []ledger.IngestRow{r})
	if err != nil {
		return "", "", err
	}
	return out[0].State, out[0].Message, nil
}

// beginIngest creates batch id under a fresh owner's lease and starts
// ingesting it.
func beginIngest(t *testing.T, l ledger.Store, id string) (ledger.Ingest, ledger.Batch, ledger.Owner) {
	t.Helper()
	o := ledger.NewOwner("ingest-" + id)
	b := acquire(t, l, ledger.NewBatch{ID: id, ContentHash: "hash-" + id}, o)
	in, err := l.BeginIngest(context.Background(), b, o, testTTL)
	if err != nil {
		t.Fatalf("BeginIngest(%s): %v", id, err)
	}
	// An ingest a test leaves open holds a connection: end it (after
	// Finish this does nothing).
	t.Cleanup(func() { _ = in.Abort(context.Background()) })
	return in, b, o
}

// ingest creates batch id, adds rows one by one, finishes it and returns
// it ready, with the state each row became.
func ingest(t *testing.T, l ledger.Store, id string, rows []ledger.IngestRow) (ledger.Batch, []ledger.State) {
	t.Helper()
	ctx := context.Background()
	in, _, o := beginIngest(t, l, id)
	states := make([]ledger.State, len(rows))
	for i, r := range rows {
		s, _, err := add(ctx, in, r)
		if err != nil {
			t.Fatalf("Add(line %d): %v", r.Line, err)
		}
		states[i] = s
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatalf("Finish(%s): %v", id, err)
	}
	if err := l.Release(ctx, id, o); err != nil {
		t.Fatalf("Release(%s): %v", id, err)
	}
	b, err := l.Batch(ctx, id)
	if err != nil {
		t.Fatalf("Batch(%s): %v", id, err)
	}
	return b, states
}

// seedRows adds n queued rows (lines 2..n+1, amount 100*line paise) to a
// new ready batch, many to a call.
func seedRows(t *testing.T, l ledger.Store, id string, n int) ledger.Batch {
	t.Helper()
	ctx := context.Background()
	in, _, o := beginIngest(t, l, id)
	rows := rowsFor(id, n)
	for len(rows) > 0 {
		k := min(len(rows), 1024)
		if _, err := in.AddMany(ctx, rows[:k]); err != nil {
			t.Fatalf("AddMany: %v", err)
		}
		rows = rows[k:]
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatalf("Finish(%s): %v", id, err)
	}
	if err := l.Release(ctx, id, o); err != nil {
		t.Fatalf("Release(%s): %v", id, err)
	}
	b, err := l.Batch(ctx, id)
	if err != nil {
		t.Fatalf("Batch(%s): %v", id, err)
	}
	return b
}

func getRow(t *testing.T, l ledger.Store, seq int64, line int) ledger.Row {
	t.Helper()
	r, err := l.Row(context.Background(), seq, line)
	if err != nil {
		t.Fatalf("Row(%d): %v", line, err)
	}
	return r
}

func counts(t *testing.T, l ledger.Store, seq int64) ledger.Counts {
	t.Helper()
	c, err := l.Counts(context.Background(), seq)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}

// testOwner is the lease holder newWriter writes under.
var testOwner = ledger.NewOwner("test")

// holdLease makes testOwner the holder of batch seq's lease, as a run is
// before it writes.
func holdLease(t *testing.T, l ledger.Store, seq int64) {
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
func newWriter(t *testing.T, l ledger.Store, seq int64) ledger.Writer {
	t.Helper()
	holdLease(t, l, seq)
	return writerOf(t, l, seq, testOwner)
}

// writerOf starts a writer for seq under o, whatever the lease, and closes
// it when the test ends (a second Close is harmless).
func writerOf(t *testing.T, l ledger.Store, seq int64, o ledger.Owner) ledger.Writer {
	t.Helper()
	w, err := l.NewWriter(context.Background(), seq, o)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// closeWriter closes w, failing on error.
func closeWriter(t *testing.T, w ledger.Writer) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Writer.Close: %v", err)
	}
}

// markInflight marks a row never sent before.
func markInflight(t *testing.T, w ledger.Writer, line int) {
	t.Helper()
	remark(t, w, line, 0)
}

// remark marks a row sent sends times before (an unknown row the
// provider had no record of, sent again).
func remark(t *testing.T, w ledger.Writer, line, sends int) {
	t.Helper()
	if err := w.MarkInflight(context.Background(), line, sends); err != nil {
		t.Fatalf("MarkInflight(%d, %d): %v", line, sends, err)
	}
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

func attempts(t *testing.T, l ledger.Store, seq int64) []ledger.AttemptRow {
	t.Helper()
	var out []ledger.AttemptRow
	if err := l.EachAttempt(context.Background(), seq, func(a *ledger.AttemptRow) error {
		out = append(out, *a)
		return nil
	}); err != nil {
		t.Fatalf("EachAttempt: %v", err)
	}
	return out
}

// runA and runB are two runs of one batch: A holds its lease first, and B
// takes it over once A's has expired (takeover).
var runA, runB = ledger.NewOwner("run-a"), ledger.NewOwner("run-b")

// leasedTo seeds n queued rows (lines 2..n+1) in a new batch whose lease o
// holds, on a ledger whose clock the test moves.
func (s suite) leasedTo(t *testing.T, o ledger.Owner, id string, n int) (*clock, ledger.Store, ledger.Batch) {
	t.Helper()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	b := seedRows(t, l, id, n)
	acquire(t, l, ledger.NewBatch{ID: b.ID}, o)
	return c, l, b
}

// takeover makes owner to take batch b over from a holder whose lease
// expired (a run paused past it: SIGSTOP, a suspended laptop), and recover
// what it left in flight, as a run or resolve does first.
func takeover(t *testing.T, l ledger.Store, c *clock, b ledger.Batch, to ledger.Owner) {
	t.Helper()
	c.advance(testTTL + time.Second)
	acquire(t, l, ledger.NewBatch{ID: b.ID}, to)
	if _, err := l.RecoverInflight(context.Background(), b.Seq, to); err != nil {
		t.Fatalf("RecoverInflight by the new holder: %v", err)
	}
}
