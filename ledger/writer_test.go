package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// testOwner is the lease holder newWriter writes under.
var testOwner = NewOwner("test")

// holdLease makes testOwner the holder of batch seq's lease, as a run is
// before it writes.
func holdLease(t *testing.T, l *Ledger, seq int64) {
	t.Helper()
	bs, err := l.Batches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Seq == seq {
			acquire(t, l, NewBatch{ID: b.ID}, testOwner)
			return
		}
	}
	t.Fatalf("no batch %d", seq)
}

// newWriter starts a writer for seq under testOwner's lease and closes it
// when the test ends.
func newWriter(t *testing.T, l *Ledger, seq int64) *Writer {
	t.Helper()
	holdLease(t, l, seq)
	return writerOf(t, l, seq, testOwner)
}

// writerOf starts a writer for seq under o, whatever the lease, and closes
// it when the test ends (a second Close is harmless).
func writerOf(t *testing.T, l *Ledger, seq int64, o Owner) *Writer {
	t.Helper()
	w, err := l.NewWriter(context.Background(), seq, o)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// closeWriter closes w (Close may be called once), failing on error.
func closeWriter(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Writer.Close: %v", err)
	}
}

func markInflight(t *testing.T, w *Writer, line int) {
	t.Helper()
	if err := w.MarkInflight(context.Background(), line); err != nil {
		t.Fatalf("MarkInflight(%d): %v", line, err)
	}
}

func record(t *testing.T, w *Writer, u Update) {
	t.Helper()
	if err := w.Record(u); err != nil {
		t.Fatalf("Record(%+v): %v", u, err)
	}
}

func flush(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func attempts(t *testing.T, l *Ledger, seq int64) []AttemptRow {
	t.Helper()
	var out []AttemptRow
	if err := l.EachAttempt(context.Background(), seq, func(a *AttemptRow) error {
		out = append(out, *a)
		return nil
	}); err != nil {
		t.Fatalf("EachAttempt: %v", err)
	}
	return out
}

// seedRows adds n queued rows (lines 2..n+1, amount 100*line paise) to a new
// ready batch in one statement: much cheaper than Ingest, for tests of what
// comes after ingest.
func seedRows(t *testing.T, l *Ledger, id string, n int) Batch {
	t.Helper()
	ctx := context.Background()
	o := NewOwner("seed")
	b := acquire(t, l, NewBatch{ID: id, ContentHash: "h"}, o)
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

func TestWriterSuccess(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := openLedger(t, Options{Now: c.now})
	b, _ := ingest(t, l, "b1", rowsFor("w", 3))
	w := newWriter(t, l, b.Seq)

	sent := c.now()
	markInflight(t, w, 2)
	// MarkInflight is committed when it returns: readers see it at once.
	if got := getRow(t, l, b.Seq, 2); got.State != StateInflight || got.Attempts != 1 || !got.FirstSent.Equal(sent) {
		t.Errorf("after MarkInflight: %s attempts=%d first_sent=%v, want inflight 1 %v", got.State, got.Attempts, got.FirstSent, sent)
	}
	c.advance(time.Second)
	at := c.now()
	a := &Attempt{Kind: "recharge", At: at, Latency: 340 * time.Millisecond, HTTPStatus: 200, Code: 1, Class: "success", Message: "Recharge success"}
	record(t, w, Update{Line: 2, To: StateSuccess, Code: 1, Message: "Recharge success", TxnID: "TXN123", Attempt: a})
	flush(t, w)

	got := getRow(t, l, b.Seq, 2)
	if got.State != StateSuccess || got.ResponseCode != 1 || got.Message != "Recharge success" ||
		got.ProviderTxnID != "TXN123" || got.Attempts != 1 || !got.FirstSent.Equal(sent) || !got.Updated.Equal(at) {
		t.Errorf("row = %+v, want success code 1 txn TXN123 attempts 1 first sent %v updated %v", got, sent, at)
	}
	want := []AttemptRow{{Line: 2, Attempt: *a, State: StateSuccess}}
	if gotA := attempts(t, l, b.Seq); !reflect.DeepEqual(gotA, want) {
		t.Errorf("attempts = %+v, want %+v", gotA, want)
	}

	// An unknown row goes out again under the same referenceid: attempts
	// counts up, first_sent stays, and an enquiry without a txn id or code
	// keeps what the row had.
	markInflight(t, w, 3)
	record(t, w, Update{Line: 3, To: StateUnknown, Code: -1, Message: "timeout", TxnID: "T3",
		Attempt: &Attempt{Kind: "recharge", At: at, Code: -1, Class: "unknown"}})
	flush(t, w)
	first := getRow(t, l, b.Seq, 3).FirstSent
	c.advance(time.Minute)
	markInflight(t, w, 3)
	record(t, w, Update{Line: 3, To: StateSuccess, Code: -1, Message: "status 1", Attempt: &Attempt{Kind: "status", Code: -1, Class: "success"}})
	flush(t, w)
	got = getRow(t, l, b.Seq, 3)
	if got.State != StateSuccess || got.Attempts != 2 || !got.FirstSent.Equal(first) || got.ProviderTxnID != "T3" || got.ResponseCode != -1 {
		t.Errorf("resent row = %+v, want success attempts 2 first sent %v txn T3 code -1", got, first)
	}
	var kinds []string
	for _, a := range attempts(t, l, b.Seq) {
		if a.Line == 3 {
			kinds = append(kinds, a.Kind+":"+string(a.State))
			if a.Code != -1 {
				t.Errorf("attempt code = %d, want -1 (none)", a.Code)
			}
		}
	}
	if want := []string{"recharge:unknown", "status:success"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("line 3 attempts = %v, want %v", kinds, want)
	}

	if err := w.Refused(); err != nil {
		t.Errorf("Refused() = %v, want nil", err)
	}
	closeWriter(t, w)
}

// A group's attempts go in attemptsPerInsert to a statement and the rest
// one by one; every one is logged, in the order recorded, with its fields.
func TestWriterLogsEveryAttemptOfAGroupInOrder(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	n := 2*attemptsPerInsert + 5
	b := seedRows(t, l, "b1", n)
	w := newWriter(t, l, b.Seq)
	lines := make([]int, n)
	for i := range lines {
		lines[i] = i + 2
	}
	dispatch(t, w, lines...)
	var want []AttemptRow
	at := time.UnixMilli(1_700_000_000_000)
	for i, line := range lines {
		a := Attempt{Kind: "recharge", At: at.Add(time.Duration(i) * time.Millisecond), Latency: time.Duration(i) * time.Millisecond,
			HTTPStatus: 200, Code: i % 3, Class: "answer", Message: fmt.Sprintf("attempt %d", i)}
		u := Update{Line: line, Attempt: &a}
		st := StateInflight // attempt-only: the row stays as it is
		if i%4 != 0 {
			u.To, u.Code, u.Message, st = StateSuccess, 0, "ok", StateSuccess
		}
		if i == 7 {
			a.Code = -1 // no provider code: stored as NULL
		}
		record(t, w, u)
		want = append(want, AttemptRow{Line: line, Attempt: a, State: st})
	}
	flush(t, w)
	if got := attempts(t, l, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("attempts:\n got %+v\nwant %+v", got, want)
	}
	if err := w.Refused(); err != nil {
		t.Errorf("Refused() = %v, want nil", err)
	}
}

func TestWriterAttemptOnly(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("a", 2))
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	before := getRow(t, l, b.Seq, 2)
	// A throttled attempt that does not settle the row: logged, row as is.
	a := Attempt{Kind: "recharge", At: time.UnixMilli(1_700_000_000_000), HTTPStatus: 429, Code: -1, Class: "throttled", Message: "slow down"}
	record(t, w, Update{Line: 2, Attempt: &a})
	flush(t, w)
	if got := getRow(t, l, b.Seq, 2); !reflect.DeepEqual(got, before) {
		t.Errorf("row changed:\n got %+v\nwant %+v", got, before)
	}
	want := []AttemptRow{{Line: 2, Attempt: a, State: StateInflight}}
	if got := attempts(t, l, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("attempts = %+v, want %+v", got, want)
	}
	if err := w.Refused(); err != nil {
		t.Errorf("Refused() = %v", err)
	}
	closeWriter(t, w)
}

func TestWriterMarkInflightRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t, Options{})
	b, _ := ingest(t, l, "b1", append(rowsFor("m", 3), IngestRow{Line: 9, Raw: []string{"x"},
		Problem: &Problem{Code: "bad", Column: "amount", Message: "bad"}}))
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	record(t, w, Update{Line: 2, To: StateSuccess, Code: 1, Message: "ok"})
	markInflight(t, w, 3) // inflight already: a second send must not start
	flush(t, w)

	for _, tc := range []struct {
		name string
		line int
	}{
		{"success row", 2},
		{"inflight row", 3},
		{"rejected row", 9},
		{"missing row", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := l.Row(ctx, b.Seq, tc.line)
			err := w.MarkInflight(ctx, tc.line)
			if !errors.Is(err, ErrTransition) {
				t.Fatalf("MarkInflight: %v, want ErrTransition", err)
			}
			after, _ := l.Row(ctx, b.Seq, tc.line)
			if !reflect.DeepEqual(after, before) {
				t.Errorf("row changed:\n got %+v\nwant %+v", after, before)
			}
		})
	}
	closeWriter(t, w)
}

func TestWriterRecordRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup []State // moves applied (through MarkInflight for inflight) first
		to    State
	}{
		{"success to queued", []State{StateInflight, StateSuccess}, StateQueued},
		{"success to inflight", []State{StateInflight, StateSuccess}, StateInflight},
		{"failed to success", []State{StateInflight, StateFailed}, StateSuccess},
		{"queued to success", nil, StateSuccess},
		{"queued to rejected", nil, StateRejected},
		{"unknown state", nil, State("bogus")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLedger(t, Options{})
			b, _ := ingest(t, l, "b1", rowsFor("r", 2))
			w := newWriter(t, l, b.Seq)
			for _, s := range tc.setup {
				if s == StateInflight {
					markInflight(t, w, 2)
					continue
				}
				record(t, w, Update{Line: 2, To: s, Code: 1, Message: "setup", TxnID: "T1"})
			}
			flush(t, w)
			before := getRow(t, l, b.Seq, 2)
			if err := w.Record(Update{Line: 2, To: tc.to, Code: 7, Message: "should not land", TxnID: "T2"}); err != nil {
				t.Fatalf("Record: %v", err)
			}
			flush(t, w)
			if got := getRow(t, l, b.Seq, 2); !reflect.DeepEqual(got, before) {
				t.Errorf("row changed:\n got %+v\nwant %+v", got, before)
			}
			err := w.Refused()
			if !errors.Is(err, ErrTransition) {
				t.Errorf("Refused() = %v, want ErrTransition", err)
			}
			// A refused update does not poison the writer.
			markInflight(t, w, 3)
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if s := getRow(t, l, b.Seq, 3).State; s != StateInflight {
				t.Errorf("line 3 = %s, want inflight", s)
			}
		})
	}
}

func TestWriterFlushVisibility(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("f", 200))
	w := newWriter(t, l, b.Seq)
	for line := 2; line <= 201; line++ {
		markInflight(t, w, line)
	}
	for line := 2; line <= 201; line++ {
		to := StateSuccess
		if line%2 == 1 {
			to = StateFailed
		}
		record(t, w, Update{Line: line, To: to, Code: 1, Message: "done"})
	}
	flush(t, w)
	c := counts(t, l, b.Seq)
	if c[StateSuccess].Rows != 100 || c[StateFailed].Rows != 100 || c[StateInflight].Rows != 0 {
		t.Errorf("counts after Flush = %v, want 100 success 100 failed", c)
	}
	closeWriter(t, w)
}

func TestWriterConcurrent(t *testing.T) {
	t.Parallel()
	// Under -race the transpiled SQLite runs ~25 times slower; 2,000 rows
	// still give 32 workers plenty of interleavings to race on.
	const workers = 32
	n := 5000
	if raceEnabled {
		n = 2000
	}
	ctx := context.Background()
	l := openLedger(t, Options{})
	b := seedRows(t, l, "b1", n)
	var wantPaise int64
	for line := 2; line <= n+1; line++ {
		wantPaise += int64(100 * line)
	}
	w := newWriter(t, l, b.Seq)

	lines := make(chan int)
	go func() {
		defer close(lines)
		for line := 2; line <= n+1; line++ {
			lines <- line
		}
	}()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for line := range lines {
				if err := w.MarkInflight(ctx, line); err != nil {
					fail(fmt.Errorf("MarkInflight(%d): %w", line, err))
					continue
				}
				att := func(s string) *Attempt { return &Attempt{Kind: "recharge", Code: 1, Class: s} }
				var err error
				switch line % 3 {
				case 0:
					err = w.Record(Update{Line: line, To: StateSuccess, Code: 1, TxnID: fmt.Sprint("T", line), Attempt: att("success")})
				case 1:
					err = w.Record(Update{Line: line, To: StateFailed, Code: 2, Attempt: att("failed")})
				default:
					// Pending, then settled by an enquiry.
					err = w.Record(Update{Line: line, To: StatePending, Code: 0, Attempt: att("pending")})
					if err == nil {
						err = w.Record(Update{Line: line, To: StateSuccess, Code: -1, Attempt: &Attempt{Kind: "status", Code: -1, Class: "success"}})
					}
				}
				if err != nil {
					fail(fmt.Errorf("Record(%d): %w", line, err))
				}
				if line%97 == 0 {
					if err := w.Flush(ctx); err != nil {
						fail(fmt.Errorf("Flush: %w", err))
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d errors, first: %v", len(errs), errs[0])
	}
	if err := w.Refused(); err != nil {
		t.Fatalf("Refused() = %v", err)
	}

	c := counts(t, l, b.Seq)
	if tot := c.Total(); tot.Rows != int64(n) || tot.Paise != wantPaise {
		t.Errorf("Counts.Total = %+v, want %d rows %d paise", tot, n, wantPaise)
	}
	var final Tally
	for s, v := range c {
		if !s.Final() {
			t.Errorf("%d rows in %s, want every row final", v.Rows, s)
		}
		final.Rows += v.Rows
		final.Paise += v.Paise
	}
	if final.Rows != int64(n) || final.Paise != wantPaise {
		t.Errorf("final tally %+v, want %d rows %d paise", final, n, wantPaise)
	}
	if err := l.EachRow(ctx, b.Seq, func(r *Row) error {
		if r.Attempts != 1 {
			return fmt.Errorf("line %d: attempts %d, want 1", r.Line, r.Attempts)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	var nAttempts int
	if err := l.EachAttempt(ctx, b.Seq, func(*AttemptRow) error { nAttempts++; return nil }); err != nil {
		t.Fatal(err)
	}
	pendingLines := 0
	for line := 2; line <= n+1; line++ {
		if line%3 == 2 {
			pendingLines++
		}
	}
	if want := n + pendingLines; nAttempts != want {
		t.Errorf("%d attempts logged, want %d", nAttempts, want)
	}
	integrityCheck(t, l.Path())
}

func TestWriterMarkInflightCanceled(t *testing.T) {
	t.Parallel()
	l := openLedger(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("x", 2))
	w := newWriter(t, l, b.Seq)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either the op was queued (and then applied: inflight) or refused
	// with ctx.Err() and the row untouched; never an error with the row moved.
	err := w.MarkInflight(ctx, 2)
	flush(t, w)
	got := getRow(t, l, b.Seq, 2).State
	switch {
	case err == nil && got == StateInflight:
	case errors.Is(err, context.Canceled) && got == StateQueued:
	default:
		t.Errorf("MarkInflight on canceled ctx = %v with row %s", err, got)
	}
	closeWriter(t, w)
}

func dispatch(t *testing.T, w *Writer, lines ...int) []int {
	t.Helper()
	got, err := w.Dispatch(context.Background(), lines)
	if err != nil {
		t.Fatalf("Dispatch(%v): %v", lines, err)
	}
	return got
}

func dispatchCount(t *testing.T, l *Ledger, seq int64) int {
	t.Helper()
	var n int
	if err := rawDB(t, l.Path()).QueryRow(`SELECT count(*) FROM dispatches WHERE batch = ?`, seq).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A dispatched row is durably recorded before Dispatch returns, stays
// queued in the table, and takes the outcomes a marked row takes, once.
func TestWriterDispatch(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := openLedger(t, Options{Now: c.now})
	b := seedRows(t, l, "d", 6) // lines 2..7
	w := newWriter(t, l, b.Seq)

	// A success can only follow a dispatch: line 7 was never dispatched.
	record(t, w, Update{Line: 7, To: StateSuccess, Code: 0})
	flush(t, w)
	if err := w.Refused(); !errors.Is(err, ErrTransition) {
		t.Fatalf("success for an undispatched queued row: Refused = %v, want ErrTransition", err)
	}

	if got := dispatch(t, w, 2, 3, 4, 5); !reflect.DeepEqual(got, []int{2, 3, 4, 5}) {
		t.Fatalf("Dispatch = %v, want all four", got)
	}
	if n := dispatchCount(t, l, b.Seq); n != 1 {
		t.Fatalf("%d dispatches committed, want 1", n)
	}
	var raw string
	if err := rawDB(t, l.Path()).QueryRow(`SELECT state FROM rows WHERE batch = ? AND line = 2`, b.Seq).Scan(&raw); err != nil || raw != "queued" {
		t.Fatalf("a dispatched row is %q in the table (%v), want queued", raw, err)
	}
	// Readers see it as inflight: it may be on its way.
	if s := getRow(t, l, b.Seq, 2).State; s != StateInflight {
		t.Fatalf("a dispatched row reads as %s, want inflight", s)
	}
	sent := c.now()
	record(t, w, Update{Line: 2, To: StateSuccess, Code: 0, Message: "ok", TxnID: "T2"})
	record(t, w, Update{Line: 3, To: StateUnknown, Code: -1, Message: "lost"})
	record(t, w, Update{Line: 4, To: StateQueued, Code: -1}) // never sent
	record(t, w, Update{Line: 5, To: StateHeld, Code: -1})   // operator held
	flush(t, w)
	// Line 4 is queued again, but its dispatch stands until the writer
	// closes: until then it reads as inflight.
	for line, want := range map[int]State{2: StateSuccess, 3: StateUnknown, 4: StateInflight, 5: StateHeld} {
		r := getRow(t, l, b.Seq, line)
		wantAttempts := 0
		if want == StateSuccess || want == StateUnknown {
			wantAttempts = 1 // sent
		}
		if r.State != want || r.Attempts != wantAttempts || (wantAttempts == 1) != r.FirstSent.Equal(sent) {
			t.Errorf("line %d: %s attempts=%d first_sent=%v, want %s %d", line, r.State, r.Attempts, r.FirstSent, want, wantAttempts)
		}
	}
	if r := getRow(t, l, b.Seq, 2); r.ProviderTxnID != "T2" || r.Message != "ok" || r.ResponseCode != 0 {
		t.Errorf("line 2: %+v", r)
	}

	// Each dispatched row leaves queued once: line 4 went back to queued,
	// so a success for it now is refused like any undispatched row's.
	w2 := newWriter(t, l, b.Seq)
	record(t, w2, Update{Line: 4, To: StateSuccess, Code: 0})
	flush(t, w2)
	if err := w2.Refused(); !errors.Is(err, ErrTransition) {
		t.Errorf("second exit from queued: Refused = %v, want ErrTransition", err)
	}
	closeWriter(t, w2)
	// Rows not queued are not dispatched.
	if got := dispatch(t, w, 2, 6); !reflect.DeepEqual(got, []int{6}) {
		t.Errorf("Dispatch(success row, queued row) = %v, want [6]", got)
	}
	record(t, w, Update{Line: 6, To: StateQueued, Code: -1})
	closeWriter(t, w)
	// Every dispatched row moved: Close leaves nothing to recover.
	if n := dispatchCount(t, l, b.Seq); n != 0 {
		t.Errorf("%d dispatches left after a clean Close, want 0", n)
	}
	if s := getRow(t, l, b.Seq, 4).State; s != StateQueued {
		t.Errorf("line 4 after Close reads as %s, want queued (never sent)", s)
	}
	if n, err := l.RecoverInflight(context.Background(), b.Seq, testOwner); err != nil || n != 0 {
		t.Errorf("RecoverInflight after a clean run = %d, %v; want 0", n, err)
	}
}

// Rows dispatched by a run that died before their outcome become unknown;
// those that got one keep it, and rows never dispatched stay queued.
func TestRecoverDispatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t, Options{})
	b := seedRows(t, l, "r", 8) // lines 2..9
	holdLease(t, l, b.Seq)
	w, err := l.NewWriter(ctx, b.Seq, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	dispatch(t, w, 2, 3, 4)
	dispatch(t, w, 5, 6)
	record(t, w, Update{Line: 3, To: StateFailed, Code: 1})
	flush(t, w)
	markInflight(t, w, 8) // the single-row path, as resolve uses
	// The run dies here: no Close. (Closing later must not clear the
	// dispatches of rows still without an outcome.)
	record(t, w, Update{Line: 5, To: StateQueued, Code: -1}) // back before the death
	closeWriter(t, w)
	if n := dispatchCount(t, l, b.Seq); n != 2 {
		t.Fatalf("%d dispatches after a run with rows unsettled, want 2 kept", n)
	}
	// Before recovery, readers see the dispatched rows as inflight, never
	// as queued: a person must not take them for unsent.
	seen := map[int]State{}
	if err := l.EachRow(ctx, b.Seq, func(r *Row) error { seen[r.Line] = r.State; return nil }); err != nil {
		t.Fatal(err)
	}
	wantSeen := map[int]State{2: StateInflight, 3: StateFailed, 4: StateInflight, 5: StateInflight, 6: StateInflight,
		7: StateQueued, 8: StateInflight, 9: StateQueued}
	if !reflect.DeepEqual(seen, wantSeen) {
		t.Errorf("EachRow before recovery: %v, want %v", seen, wantSeen)
	}
	if c := counts(t, l, b.Seq); c[StateInflight].Rows != 5 || c[StateQueued].Rows != 2 ||
		c[StateQueued].Paise != 100*(7+9) {
		t.Errorf("Counts before recovery: %v, want 5 inflight, 2 queued (1600 paise)", c)
	}
	for s, want := range map[State][]int{StateQueued: {7, 9}, StateInflight: {2, 4, 5, 6, 8}} {
		var got []int
		for after := 0; ; {
			page, err := l.Page(ctx, b.Seq, s, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				if r.State != s {
					t.Errorf("Page(%s) gave line %d as %s", s, r.Line, r.State)
				}
				got = append(got, r.Line)
			}
			after = page[len(page)-1].Line
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Page(%s) before recovery: %v, want %v", s, got, want)
		}
		if n, err := l.CountState(ctx, b.Seq, s); err != nil || n != int64(len(want)) {
			t.Errorf("CountState(%s) = %d, %v; want %d", s, n, err, len(want))
		}
	}

	n, err := l.RecoverInflight(ctx, b.Seq, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]State{2: StateUnknown, 3: StateFailed, 4: StateUnknown, 5: StateUnknown, 6: StateUnknown,
		7: StateQueued, 8: StateUnknown, 9: StateQueued}
	for line, s := range want {
		if got := getRow(t, l, b.Seq, line).State; got != s {
			t.Errorf("line %d: %s after recovery, want %s", line, got, s)
		}
	}
	if n != 5 {
		t.Errorf("RecoverInflight moved %d rows, want 5 (2, 4, 5, 6 dispatched; 8 inflight)", n)
	}
	// A recovered row may have been sent: it counts as sent.
	for _, line := range []int{2, 4, 5, 6} {
		if r := getRow(t, l, b.Seq, line); r.Attempts != 1 || r.FirstSent.IsZero() {
			t.Errorf("line %d: attempts=%d first_sent=%v after recovery, want 1 and a time", line, r.Attempts, r.FirstSent)
		}
	}
	if c := dispatchCount(t, l, b.Seq); c != 0 {
		t.Errorf("%d dispatches left after recovery, want 0", c)
	}
}

// runA and runB are two runs of one batch: A holds its lease first, and B
// takes it over once A's has expired (takeover).
var runA, runB = NewOwner("run-a"), NewOwner("run-b")

// leasedTo seeds n queued rows (lines 2..n+1) in a new batch whose lease o
// holds, on a ledger whose clock the test moves.
func leasedTo(t *testing.T, o Owner, id string, n int) (*clock, *Ledger, Batch) {
	t.Helper()
	c := newClock()
	l := openLedger(t, Options{Now: c.now})
	b := seedRows(t, l, id, n)
	acquire(t, l, NewBatch{ID: b.ID}, o)
	return c, l, b
}

// takeover makes owner b take batch id over from a holder whose lease
// expired (a run paused past it: SIGSTOP, a suspended laptop), and recover
// what it left in flight, as a run or resolve does first.
func takeover(t *testing.T, l *Ledger, c *clock, b Batch, to Owner) {
	t.Helper()
	c.advance(testTTL + time.Second)
	acquire(t, l, NewBatch{ID: b.ID}, to)
	if _, err := l.RecoverInflight(context.Background(), b.Seq, to); err != nil {
		t.Fatalf("RecoverInflight by the new holder: %v", err)
	}
}

// A run paused past its lease and taken over writes nothing when it
// resumes: not its outcomes, not a new dispatch, not the deletion of
// dispatches on Close. The new holder settles its rows by enquiry, and
// what the new holder dispatched stays in flight, recoverable.
func TestStaleWriterWritesNothingAfterTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := leasedTo(t, runA, "t", 10) // lines 2..11
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2, 3) // A sends both, then is paused before recording

	takeover(t, l, c, b, runB)
	for _, line := range []int{2, 3} {
		if s := getRow(t, l, b.Seq, line).State; s != StateUnknown {
			t.Fatalf("line %d after the takeover: %s, want unknown", line, s)
		}
	}
	wb := writerOf(t, l, b.Seq, runB)
	dispatch(t, wb, 4, 5, 6) // B is sending these

	// A resumes.
	if err := wa.Record(Update{Line: 2, To: StateSuccess, Code: 0, TxnID: "T2"}); err != nil {
		t.Fatalf("Record is queued, its error comes later: %v", err)
	}
	if err := wa.Flush(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's Flush after the takeover = %v, want ErrLeaseLost", err)
	}
	if got, err := wa.Dispatch(ctx, []int{7}); !errors.Is(err, ErrLeaseLost) || len(got) != 0 {
		t.Errorf("A's Dispatch after the takeover = %v, %v; want ErrLeaseLost and nothing", got, err)
	}
	if err := wa.Close(); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's Close = %v, want ErrLeaseLost", err)
	}
	want := map[int]State{2: StateUnknown, 3: StateUnknown, 4: StateInflight, 5: StateInflight, 6: StateInflight, 7: StateQueued}
	for line, s := range want {
		if got := getRow(t, l, b.Seq, line).State; got != s {
			t.Errorf("line %d after A resumed: %s, want %s", line, got, s)
		}
	}
	if n := dispatchCount(t, l, b.Seq); n != 1 {
		t.Errorf("%d dispatches after A's Close, want B's 1", n)
	}

	// B dies; the next holder finds what B had in flight.
	c2 := NewOwner("run-c")
	c.advance(testTTL + time.Second)
	acquire(t, l, NewBatch{ID: b.ID}, c2)
	if n, err := l.RecoverInflight(ctx, b.Seq, c2); err != nil || n != 3 {
		t.Errorf("RecoverInflight after B died = %d, %v; want 3 (lines 4-6)", n, err)
	}
	// B never learns it died: its Close writes nothing either.
	_ = wb.Close()
	for _, line := range []int{4, 5, 6} {
		if s := getRow(t, l, b.Seq, line).State; s != StateUnknown {
			t.Errorf("line %d after B's Close: %s, want unknown", line, s)
		}
	}
}

// A stale run's "dispatched but never sent" must not overwrite the row the
// new holder re-sent, nor get its true outcome refused.
func TestStaleRequeueLeavesNewHoldersRowAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := leasedTo(t, runA, "q", 4)
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2) // waits in A's pipeline, unsent, when A is paused

	takeover(t, l, c, b, runB)
	wb := writerOf(t, l, b.Seq, runB)
	markInflight(t, wb, 2) // the enquiry found nothing: B re-sends

	_ = wa.Record(Update{Line: 2, To: StateQueued, Code: -1})
	if err := wa.Flush(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's Flush = %v, want ErrLeaseLost", err)
	}
	if s := getRow(t, l, b.Seq, 2).State; s != StateInflight {
		t.Errorf("line 2 after A's stale requeue: %s, want inflight (B is sending it)", s)
	}
	record(t, wb, Update{Line: 2, To: StateSuccess, Code: 0, TxnID: "T"})
	closeWriter(t, wb)
	if r := wb.Refused(); r != nil {
		t.Errorf("B's outcome refused: %v", r)
	}
	if r := getRow(t, l, b.Seq, 2); r.State != StateSuccess || r.ProviderTxnID != "T" {
		t.Errorf("line 2 = %s txn %q, want success T", r.State, r.ProviderTxnID)
	}
}

// A run paused before it started its writer, and taken over meanwhile,
// cannot write under the new holder's lease once it resumes.
func TestWriterOfAnOwnerWithoutTheLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := leasedTo(t, runA, "w", 4)
	takeover(t, l, c, b, runB)
	wb := writerOf(t, l, b.Seq, runB)
	wa := writerOf(t, l, b.Seq, runA)
	if got, err := wa.Dispatch(ctx, []int{2, 3}); !errors.Is(err, ErrLeaseLost) || len(got) != 0 {
		t.Errorf("A's Dispatch under B's lease = %v, %v; want ErrLeaseLost and nothing", got, err)
	}
	if err := wa.MarkInflight(ctx, 4); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's MarkInflight under B's lease = %v, want ErrLeaseLost", err)
	}
	if got := dispatch(t, wb, 2, 3); !reflect.DeepEqual(got, []int{2, 3}) {
		t.Errorf("B's Dispatch = %v, want [2 3]", got)
	}
	// Nor may A recover B's dispatches, requeue held rows, or clear rows.
	if n, err := l.RecoverInflight(ctx, b.Seq, runA); !errors.Is(err, ErrLeaseLost) || n != 0 {
		t.Errorf("A's RecoverInflight = %d, %v; want ErrLeaseLost", n, err)
	}
	if n, err := l.Move(ctx, b.Seq, runA, StateQueued, StateHeld, 0, ""); !errors.Is(err, ErrLeaseLost) || n != 0 {
		t.Errorf("A's Move = %d, %v; want ErrLeaseLost", n, err)
	}
	if err := l.ClearRows(ctx, b.Seq, runA); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's ClearRows = %v, want ErrLeaseLost", err)
	}
	if n := dispatchCount(t, l, b.Seq); n != 1 {
		t.Errorf("%d dispatches, want B's 1", n)
	}
	if s := getRow(t, l, b.Seq, 4).State; s != StateQueued {
		t.Errorf("line 4: %s, want queued", s)
	}
}

// A stale writer whose rows all settled before the takeover reaches Close
// with nothing sticky: deleting its dispatches by id must still be fenced,
// since the new holder's first dispatch may reuse the same id.
func TestStaleCloseKeepsNewHoldersDispatch(t *testing.T) {
	t.Parallel()
	c, l, b := leasedTo(t, runA, "d", 4)
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2)
	record(t, wa, Update{Line: 2, To: StateSuccess, Code: 0})
	flush(t, wa) // committed while A held the lease

	takeover(t, l, c, b, runB) // deletes A's dispatch
	wb := writerOf(t, l, b.Seq, runB)
	dispatch(t, wb, 3)
	if err := wa.Close(); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's Close = %v, want ErrLeaseLost", err)
	}
	if n := dispatchCount(t, l, b.Seq); n != 1 {
		t.Errorf("%d dispatches after A's Close, want B's 1", n)
	}
	if s := getRow(t, l, b.Seq, 3).State; s != StateInflight {
		t.Errorf("line 3, dispatched by B: %s, want inflight", s)
	}
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
	record(t, w, Update{Line: 2, To: StateQueued, Code: -1})
	record(t, w, Update{Line: 3, To: StateHeld, Code: -1})
	flush(t, w)
	if err := w.Refused(); !errors.Is(err, ErrTransition) {
		t.Errorf("Refused = %v, want ErrTransition", err)
	}
	for _, line := range []int{2, 3} {
		if s := getRow(t, l, b.Seq, line).State; s != StateInflight {
			t.Errorf("line %d: %s, want inflight left alone", line, s)
		}
	}
}
