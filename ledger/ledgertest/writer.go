package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

func (s suite) testWriterSuccess(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	b, _ := ingest(t, l, "b1", rowsFor("w", 3))
	w := newWriter(t, l, b.Seq)

	sent := c.now()
	markInflight(t, w, 2)
	// MarkInflight is committed when it returns: readers see it at once.
	if got := getRow(t, l, b.Seq, 2); got.State != ledger.StateInflight || got.Attempts != 1 || !got.FirstSent.Equal(sent) {
		t.Errorf("after MarkInflight: %s attempts=%d first_sent=%v, want inflight 1 %v", got.State, got.Attempts, got.FirstSent, sent)
	}
	c.advance(time.Second)
	at := c.now()
	a := &ledger.Attempt{Kind: "recharge", At: at, Latency: 340 * time.Millisecond, HTTPStatus: 200, Code: 1, Class: "success", Message: "Recharge success"}
	record(t, w, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 1, Message: "Recharge success", TxnID: "TXN123", Attempt: a})
	flush(t, w)

	got := getRow(t, l, b.Seq, 2)
	if got.State != ledger.StateSuccess || got.ResponseCode != 1 || got.Message != "Recharge success" ||
		got.ProviderTxnID != "TXN123" || got.Attempts != 1 || !got.FirstSent.Equal(sent) || !got.Updated.Equal(at) {
		t.Errorf("row = %+v, want success code 1 txn TXN123 attempts 1 first sent %v updated %v", got, sent, at)
	}
	want := []ledger.AttemptRow{{Line: 2, Attempt: *a, State: ledger.StateSuccess, Process: testOwner.Process()}}
	if gotA := attempts(t, l, b.Seq); !reflect.DeepEqual(gotA, want) {
		t.Errorf("attempts = %+v, want %+v", gotA, want)
	}

	// An unknown row goes out again under the same referenceid: attempts
	// counts up, first_sent stays, and an enquiry without a txn id or code
	// keeps what the row had.
	markInflight(t, w, 3)
	record(t, w, ledger.Update{Line: 3, To: ledger.StateUnknown, Code: -1, Message: "timeout", TxnID: "T3",
		Attempt: &ledger.Attempt{Kind: "recharge", At: at, Code: -1, Class: "unknown"}})
	flush(t, w)
	first := getRow(t, l, b.Seq, 3).FirstSent
	c.advance(time.Minute)
	// A mark that does not know of the first send is refused: the row
	// may be at the provider since.
	if err := w.MarkInflight(context.Background(), 3, 0); !errors.Is(err, ledger.ErrTransition) {
		t.Errorf("MarkInflight of a row sent since it was read: %v, want ErrTransition", err)
	}
	remark(t, w, 3, 1)
	record(t, w, ledger.Update{Line: 3, To: ledger.StateSuccess, Code: -1, Message: "status 1", Attempt: &ledger.Attempt{Kind: "status", Code: -1, Class: "success"}})
	flush(t, w)
	got = getRow(t, l, b.Seq, 3)
	if got.State != ledger.StateSuccess || got.Attempts != 2 || !got.FirstSent.Equal(first) || got.ProviderTxnID != "T3" || got.ResponseCode != -1 {
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

// Every attempt of a group is logged, in the order recorded, with its
// fields (the SQLite store inserts 16 to a statement and the rest one by
// one: 37 crosses both).
func (s suite) testWriterLogsEveryAttemptOfAGroupInOrder(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	n := 2*16 + 5
	b := seedRows(t, l, "b1", n)
	w := newWriter(t, l, b.Seq)
	lines := make([]int, n)
	for i := range lines {
		lines[i] = i + 2
	}
	dispatch(t, w, lines...)
	var want []ledger.AttemptRow
	at := time.UnixMilli(1_700_000_000_000)
	for i, line := range lines {
		a := ledger.Attempt{Kind: "recharge", At: at.Add(time.Duration(i) * time.Millisecond), Latency: time.Duration(i) * time.Millisecond,
			HTTPStatus: 200, Code: i % 3, Class: "answer", Message: fmt.Sprintf("attempt %d", i)}
		u := ledger.Update{Line: line, Attempt: &a}
		st := ledger.StateInflight // attempt-only: the row stays as it is
		if i%4 != 0 {
			u.To, u.Code, u.Message, st = ledger.StateSuccess, 0, "ok", ledger.StateSuccess
		}
		if i == 7 {
			a.Code = -1 // no provider code: stored as NULL
		}
		record(t, w, u)
		want = append(want, ledger.AttemptRow{Line: line, Attempt: a, State: st, Process: testOwner.Process()})
	}
	flush(t, w)
	if got := attempts(t, l, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("attempts:\n got %+v\nwant %+v", got, want)
	}
	if err := w.Refused(); err != nil {
		t.Errorf("Refused() = %v, want nil", err)
	}
}

func (s suite) testWriterAttemptOnly(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("a", 2))
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	before := getRow(t, l, b.Seq, 2)
	// A throttled attempt that does not settle the row: logged, row as is.
	a := ledger.Attempt{Kind: "recharge", At: time.UnixMilli(1_700_000_000_000), HTTPStatus: 429, Code: -1, Class: "throttled", Message: "slow down"}
	record(t, w, ledger.Update{Line: 2, Attempt: &a})
	flush(t, w)
	if got := getRow(t, l, b.Seq, 2); !reflect.DeepEqual(got, before) {
		t.Errorf("row changed:\n got %+v\nwant %+v", got, before)
	}
	want := []ledger.AttemptRow{{Line: 2, Attempt: a, State: ledger.StateInflight, Process: testOwner.Process()}}
	if got := attempts(t, l, b.Seq); !reflect.DeepEqual(got, want) {
		t.Errorf("attempts = %+v, want %+v", got, want)
	}
	if err := w.Refused(); err != nil {
		t.Errorf("Refused() = %v", err)
	}
	closeWriter(t, w)
}

func (s suite) testWriterMarkInflightRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b1", append(rowsFor("m", 3), ledger.IngestRow{Line: 9, Raw: []string{"x"},
		Problem: &ledger.Problem{Code: "bad", Column: "amount", Message: "bad"}}))
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	record(t, w, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 1, Message: "ok"})
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
			err := w.MarkInflight(ctx, tc.line, before.Attempts)
			if !errors.Is(err, ledger.ErrTransition) {
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

func (s suite) testWriterRecordRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup []ledger.State // moves applied (through MarkInflight for inflight) first
		to    ledger.State
	}{
		{"success to queued", []ledger.State{ledger.StateInflight, ledger.StateSuccess}, ledger.StateQueued},
		{"success to inflight", []ledger.State{ledger.StateInflight, ledger.StateSuccess}, ledger.StateInflight},
		{"failed to success", []ledger.State{ledger.StateInflight, ledger.StateFailed}, ledger.StateSuccess},
		{"queued to success", nil, ledger.StateSuccess},
		{"queued to rejected", nil, ledger.StateRejected},
		{"unknown state", nil, ledger.State("bogus")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := s.open(t, Options{})
			b, _ := ingest(t, l, "b1", rowsFor("r", 2))
			w := newWriter(t, l, b.Seq)
			for _, s := range tc.setup {
				if s == ledger.StateInflight {
					markInflight(t, w, 2)
					continue
				}
				record(t, w, ledger.Update{Line: 2, To: s, Code: 1, Message: "setup", TxnID: "T1"})
			}
			flush(t, w)
			before := getRow(t, l, b.Seq, 2)
			if err := w.Record(ledger.Update{Line: 2, To: tc.to, Code: 7, Message: "should not land", TxnID: "T2"}); err != nil {
				t.Fatalf("Record: %v", err)
			}
			flush(t, w)
			if got := getRow(t, l, b.Seq, 2); !reflect.DeepEqual(got, before) {
				t.Errorf("row changed:\n got %+v\nwant %+v", got, before)
			}
			err := w.Refused()
			if !errors.Is(err, ledger.ErrTransition) {
				t.Errorf("Refused() = %v, want ErrTransition", err)
			}
			// A refused update does not poison the writer.
			markInflight(t, w, 3)
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if s := getRow(t, l, b.Seq, 3).State; s != ledger.StateInflight {
				t.Errorf("line 3 = %s, want inflight", s)
			}
		})
	}
}

// testWriterIfSends: a move decided on an earlier read of a row (an
// enquiry that found no record) applies only while the row's sends are
// what that read saw: another process may have sent it since.
func (s suite) testWriterIfSends(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	b := seedRows(t, l, "i", 3) // lines 2..4
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	record(t, w, ledger.Update{Line: 2, To: ledger.StateUnknown, Code: -1, Message: "lost"})
	flush(t, w)
	read := getRow(t, l, b.Seq, 2)
	remark(t, w, 2, read.Attempts) // sent again since that read
	record(t, w, ledger.Update{Line: 2, To: ledger.StateUnknown, Code: -1, Message: "lost again"})
	flush(t, w)
	before := getRow(t, l, b.Seq, 2)
	// hold holds line on an enquiry that found no record, and returns the
	// state its attempt was logged with.
	hold := func(line, sends int) ledger.State {
		t.Helper()
		return recordEnquiry(t, l, b.Seq, w, ledger.Update{Line: line, To: ledger.StateHeld, Code: -1, Message: "held", IfSends: &sends}, "not_found")
	}

	// Refused, its attempt tells what the row is, not the move it missed.
	if st := hold(2, read.Attempts); st != ledger.StateUnknown {
		t.Errorf("a refused hold's attempt logged %s, want the row's state, unknown", st)
	}
	if got := getRow(t, l, b.Seq, 2); !reflect.DeepEqual(got, before) {
		t.Errorf("a move on a stale count of sends applied:\n got %+v\nwant %+v", got, before)
	}
	if err := w.Refused(); !errors.Is(err, ledger.ErrTransition) {
		t.Errorf("Refused() = %v, want ErrTransition", err)
	}
	if st := hold(2, before.Attempts); st != ledger.StateHeld {
		t.Errorf("a hold's attempt logged %s, want held", st)
	}
	if got := getRow(t, l, b.Seq, 2); got.State != ledger.StateHeld || got.Attempts != before.Attempts {
		t.Errorf("a move on the row's count of sends: %s attempts=%d, want held %d", got.State, got.Attempts, before.Attempts)
	}

	// A dispatched row has not counted its send yet: nothing to check.
	dispatch(t, w, 3)
	if st := hold(3, 0); st != ledger.StateInflight {
		t.Errorf("a refused hold of a dispatched row logged %s, want inflight", st)
	}
	if got := getRow(t, l, b.Seq, 3); got.State == ledger.StateHeld {
		t.Errorf("a dispatched row moved by its count of sends: %+v", got)
	}
	record(t, w, ledger.Update{Line: 3, To: ledger.StateQueued, Code: -1}) // never sent
	closeWriter(t, w)
}

// lostAcrossProcesses is batch prefix's line 2 on a shared ledger, sent by
// process A (writer wa) and recorded unknown, with process B (writer wb)
// at the batch too; l is A's ledger. It skips a store that has one
// process at a time.
func (s suite) lostAcrossProcesses(t *testing.T, prefix string) (l ledger.Store, b ledger.Batch, wa, wb ledger.Writer) {
	t.Helper()
	db := s.newDB(t)
	l = db.Open(t, Options{})
	b = seedRows(t, l, prefix, 1)
	acquire(t, l, ledger.NewBatch{ID: b.ID}, runA)
	wa = writerOf(t, l, b.Seq, runA)
	if _, ok := wa.(ledger.Claimer); !ok {
		t.Skip("one process at a time on this store")
	}
	lb := db.Open(t, Options{})
	if _, err := lb.Acquire(context.Background(), ledger.NewBatch{ID: b.ID}, runB, testTTL); err != nil {
		t.Fatal(err)
	}
	wb = writerOf(t, lb, b.Seq, runB)
	markInflight(t, wa, 2)
	record(t, wa, ledger.Update{Line: 2, To: ledger.StateUnknown, Code: -1, Message: "lost"})
	flush(t, wa)
	return l, b, wa, wb
}

// testWriterIfSendsAcrossProcesses: on a shared ledger, process A decides
// to hold a row on its read of the row's sends; process B sends it
// meanwhile. A's hold is refused while B has the row in flight, and after
// B records it unknown again: its request may be charged.
func (s suite) testWriterIfSendsAcrossProcesses(t *testing.T) {
	t.Parallel()
	l, b, wa, wb := s.lostAcrossProcesses(t, "ifs")
	read := getRow(t, l, b.Seq, 2) // A's enquiry round reads it
	// hold is A's hold, on its enquiry; it returns the state A's attempt
	// was logged with.
	hold := func() ledger.State {
		t.Helper()
		sends := read.Attempts
		return recordEnquiry(t, l, b.Seq, wa, ledger.Update{Line: 2, To: ledger.StateHeld, Code: -1, Message: "held", IfSends: &sends}, "not_found")
	}

	remark(t, wb, 2, read.Attempts) // B found no record too, and sends it
	if st := hold(); st != ledger.StateInflight {
		t.Errorf("A's refused hold logged its enquiry %s, want inflight, as the row is", st)
	}
	if got := getRow(t, l, b.Seq, 2); got.State != ledger.StateInflight {
		t.Errorf("A's hold on B's row in flight: %s (%s), want it in flight for B", got.State, got.Message)
	}
	record(t, wb, ledger.Update{Line: 2, To: ledger.StateUnknown, Code: -1, Message: "lost again"})
	flush(t, wb)
	if st := hold(); st != ledger.StateUnknown {
		t.Errorf("A's refused hold logged its enquiry %s, want unknown, as the row is", st)
	}
	if got := getRow(t, l, b.Seq, 2); got.State != ledger.StateUnknown || got.Attempts != read.Attempts+1 {
		t.Errorf("A's hold after B's send: %s attempts=%d, want unknown %d (B's request may be charged)", got.State, got.Attempts, read.Attempts+1)
	}
}

// testWriterRefusedMoveLogsTheRowsState: a row's answers recorded in one
// group, the last one refused (an older "pending" after "success"): each
// attempt is logged with what it did to the row, the refused one with
// the row's state, not the move it missed, nor the others with the
// refused one's.
func (s suite) testWriterRefusedMoveLogsTheRowsState(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	b := seedRows(t, l, "late", 1) // line 2
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	for _, u := range []struct {
		to   ledger.State
		code int
	}{{ledger.StatePending, -1}, {ledger.StateSuccess, 0}, {ledger.StatePending, -1}} {
		record(t, w, ledger.Update{Line: 2, To: u.to, Code: u.code, Message: string(u.to), Attempt: enquiry(string(u.to))})
	}
	flush(t, w)
	if err := w.Refused(); !errors.Is(err, ledger.ErrTransition) {
		t.Errorf("Refused() = %v, want ErrTransition (success to pending)", err)
	}
	var got []ledger.State
	for _, a := range attempts(t, l, b.Seq) {
		got = append(got, a.State)
	}
	if want := []ledger.State{ledger.StatePending, ledger.StateSuccess, ledger.StateSuccess}; !reflect.DeepEqual(got, want) {
		t.Errorf("attempts logged %v, want %v", got, want)
	}
	closeWriter(t, w)
}

// testWriterMootMoveAcrossProcesses: on a shared ledger, processes A and B
// both ask about an unknown row; B's answer (success) is recorded first,
// A's older one (pending) is refused. A's enquiry is logged with the
// row's state, success, not with the move it missed: the attempts log
// must not end on a state the row never went back to.
func (s suite) testWriterMootMoveAcrossProcesses(t *testing.T) {
	t.Parallel()
	l, b, wa, wb := s.lostAcrossProcesses(t, "moot")
	record(t, wb, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0, Message: "ok", Attempt: enquiry("success")})
	flush(t, wb)
	st := recordEnquiry(t, l, b.Seq, wa, ledger.Update{Line: 2, To: ledger.StatePending, Code: -1, Message: "pending"}, "pending")
	if got := getRow(t, l, b.Seq, 2); got.State != ledger.StateSuccess {
		t.Fatalf("row after A's older answer: %s, want success (B's)", got.State)
	}
	if st != ledger.StateSuccess {
		t.Errorf("A's refused move logged its enquiry %s, want success, as the row is", st)
	}
}

// enquiry is a status enquiry's attempt, answered class, made now.
func enquiry(class string) *ledger.Attempt {
	return &ledger.Attempt{Kind: "status", At: time.Now(), Class: class, Message: class}
}

// recordEnquiry records u through w with an enquiry answered class, and
// returns the state that attempt was logged with (l, batch seq, reads it).
func recordEnquiry(t *testing.T, l ledger.Store, seq int64, w ledger.Writer, u ledger.Update, class string) ledger.State {
	t.Helper()
	n := len(attempts(t, l, seq))
	u.Attempt = enquiry(class)
	record(t, w, u)
	flush(t, w)
	logged := attempts(t, l, seq)
	if len(logged) != n+1 {
		t.Fatalf("the enquiry's attempt: %d attempts logged, want %d", len(logged), n+1)
	}
	return logged[n].State
}

func (s suite) testWriterFlushVisibility(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("f", 200))
	w := newWriter(t, l, b.Seq)
	for line := 2; line <= 201; line++ {
		markInflight(t, w, line)
	}
	for line := 2; line <= 201; line++ {
		to := ledger.StateSuccess
		if line%2 == 1 {
			to = ledger.StateFailed
		}
		record(t, w, ledger.Update{Line: line, To: to, Code: 1, Message: "done"})
	}
	flush(t, w)
	c := counts(t, l, b.Seq)
	if c[ledger.StateSuccess].Rows != 100 || c[ledger.StateFailed].Rows != 100 || c[ledger.StateInflight].Rows != 0 {
		t.Errorf("counts after Flush = %v, want 100 success 100 failed", c)
	}
	closeWriter(t, w)
}

func (s suite) testWriterConcurrent(t *testing.T) {
	t.Parallel()
	// Under -race the transpiled SQLite runs ~25 times slower; 2,000 rows
	// still give 32 workers plenty of interleavings to race on.
	const workers = 32
	n := 5000
	if raceEnabled {
		n = 2000
	}
	ctx := context.Background()
	db := s.newDB(t)
	l := db.Open(t, Options{})
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
				if err := w.MarkInflight(ctx, line, 0); err != nil {
					fail(fmt.Errorf("MarkInflight(%d): %w", line, err))
					continue
				}
				att := func(s string) *ledger.Attempt { return &ledger.Attempt{Kind: "recharge", Code: 1, Class: s} }
				var err error
				switch line % 3 {
				case 0:
					err = w.Record(ledger.Update{Line: line, To: ledger.StateSuccess, Code: 1, TxnID: fmt.Sprint("T", line), Attempt: att("success")})
				case 1:
					err = w.Record(ledger.Update{Line: line, To: ledger.StateFailed, Code: 2, Attempt: att("failed")})
				default:
					// Pending, then settled by an enquiry.
					err = w.Record(ledger.Update{Line: line, To: ledger.StatePending, Code: 0, Attempt: att("pending")})
					if err == nil {
						err = w.Record(ledger.Update{Line: line, To: ledger.StateSuccess, Code: -1, Attempt: &ledger.Attempt{Kind: "status", Code: -1, Class: "success"}})
					}
				}
				if err != nil {
					fail(fmt.Errorf("Record(%d): %w", line, err))
				}
				if line%97 == 0 {
					if err := w.Flush(ctx); err != nil {
						fail(fmt.Errorf("flush: %w", err))
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
	var final ledger.Tally
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
	if err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		if r.Attempts != 1 {
			return fmt.Errorf("line %d: attempts %d, want 1", r.Line, r.Attempts)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	var nAttempts int
	if err := l.EachAttempt(ctx, b.Seq, func(*ledger.AttemptRow) error { nAttempts++; return nil }); err != nil {
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
	db.Check(t)
}

func (s suite) testWriterMarkInflightCanceled(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("x", 2))
	w := newWriter(t, l, b.Seq)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either the op was queued (and then applied: inflight) or refused
	// with ctx.Err() and the row untouched; never an error with the row moved.
	err := w.MarkInflight(ctx, 2, 0)
	flush(t, w)
	got := getRow(t, l, b.Seq, 2).State
	switch {
	case err == nil && got == ledger.StateInflight:
	case errors.Is(err, context.Canceled) && got == ledger.StateQueued:
	default:
		t.Errorf("MarkInflight on canceled ctx = %v with row %s", err, got)
	}
	closeWriter(t, w)
}

// A dispatched row is durably recorded before Dispatch returns, stays
// queued in the table, and takes the outcomes a marked row takes, once.
func (s suite) testWriterDispatch(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	b := seedRows(t, l, "d", 6) // lines 2..7
	w := newWriter(t, l, b.Seq)

	// A success can only follow a dispatch: line 7 was never dispatched.
	record(t, w, ledger.Update{Line: 7, To: ledger.StateSuccess, Code: 0})
	flush(t, w)
	if err := w.Refused(); !errors.Is(err, ledger.ErrTransition) {
		t.Fatalf("success for an undispatched queued row: Refused = %v, want ErrTransition", err)
	}

	if got := dispatch(t, w, 2, 3, 4, 5); !reflect.DeepEqual(got, []int{2, 3, 4, 5}) {
		t.Fatalf("Dispatch = %v, want all four", got)
	}
	// Readers see it as inflight: it may be on its way.
	if s := getRow(t, l, b.Seq, 2).State; s != ledger.StateInflight {
		t.Fatalf("a dispatched row reads as %s, want inflight", s)
	}
	sent := c.now()
	record(t, w, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0, Message: "ok", TxnID: "T2"})
	record(t, w, ledger.Update{Line: 3, To: ledger.StateUnknown, Code: -1, Message: "lost"})
	record(t, w, ledger.Update{Line: 4, To: ledger.StateQueued, Code: -1}) // never sent
	record(t, w, ledger.Update{Line: 5, To: ledger.StateHeld, Code: -1})   // operator held
	flush(t, w)
	// Line 4 is queued again. A store may show it inflight until the
	// writer closes (SQLite keeps its chunk's dispatch until then): never
	// as anything that says it was sent.
	for line, want := range map[int]ledger.State{2: ledger.StateSuccess, 3: ledger.StateUnknown, 4: ledger.StateQueued, 5: ledger.StateHeld} {
		r := getRow(t, l, b.Seq, line)
		wantAttempts := 0
		if want == ledger.StateSuccess || want == ledger.StateUnknown {
			wantAttempts = 1 // sent
		}
		if line == 4 && r.State == ledger.StateInflight {
			want = ledger.StateInflight
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
	record(t, w2, ledger.Update{Line: 4, To: ledger.StateSuccess, Code: 0})
	flush(t, w2)
	if err := w2.Refused(); !errors.Is(err, ledger.ErrTransition) {
		t.Errorf("second exit from queued: Refused = %v, want ErrTransition", err)
	}
	closeWriter(t, w2)
	// Rows not queued are not dispatched.
	if got := dispatch(t, w, 2, 6); !reflect.DeepEqual(got, []int{6}) {
		t.Errorf("Dispatch(success row, queued row) = %v, want [6]", got)
	}
	record(t, w, ledger.Update{Line: 6, To: ledger.StateQueued, Code: -1})
	closeWriter(t, w)
	// Every dispatched row moved: Close leaves nothing to recover.
	if s := getRow(t, l, b.Seq, 4).State; s != ledger.StateQueued {
		t.Errorf("line 4 after Close reads as %s, want queued (never sent)", s)
	}
	next := ledger.NewOwner("next")
	if err := l.Release(context.Background(), b.ID, testOwner); err != nil {
		t.Fatal(err)
	}
	acquire(t, l, ledger.NewBatch{ID: b.ID}, next)
	if rec, err := l.RecoverInflight(context.Background(), b.Seq, next); err != nil || rec.Rows != 0 {
		t.Errorf("RecoverInflight after a clean run = %d, %v; want 0", rec.Rows, err)
	}
}

// Rows dispatched by a run that died before their outcome become unknown;
// those that got one keep it, and rows never dispatched stay queued.
func (s suite) testRecoverDispatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	b := seedRows(t, l, "r", 8) // lines 2..9
	holdLease(t, l, b.Seq)
	w, err := l.NewWriter(ctx, b.Seq, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	dispatch(t, w, 2, 3, 4)
	dispatch(t, w, 5, 6)
	record(t, w, ledger.Update{Line: 3, To: ledger.StateFailed, Code: 1})
	flush(t, w)
	markInflight(t, w, 8) // the single-row path, as resolve uses
	// The run dies here, its outcomes for 2, 4, 5, 6 and 8 never known.
	// (Closing its writer must not clear what it had in flight.)
	closeWriter(t, w)
	// Before recovery, readers see the dispatched rows as inflight, never
	// as queued: a person must not take them for unsent.
	seen := map[int]ledger.State{}
	if err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error { seen[r.Line] = r.State; return nil }); err != nil {
		t.Fatal(err)
	}
	wantSeen := map[int]ledger.State{2: ledger.StateInflight, 3: ledger.StateFailed, 4: ledger.StateInflight, 5: ledger.StateInflight, 6: ledger.StateInflight,
		7: ledger.StateQueued, 8: ledger.StateInflight, 9: ledger.StateQueued}
	if !reflect.DeepEqual(seen, wantSeen) {
		t.Errorf("EachRow before recovery: %v, want %v", seen, wantSeen)
	}
	if c := counts(t, l, b.Seq); c[ledger.StateInflight].Rows != 5 || c[ledger.StateQueued].Rows != 2 ||
		c[ledger.StateQueued].Paise != 100*(7+9) {
		t.Errorf("Counts before recovery: %v, want 5 inflight, 2 queued (1600 paise)", c)
	}
	for s, want := range map[ledger.State][]int{ledger.StateQueued: {7, 9}, ledger.StateInflight: {2, 4, 5, 6, 8}} {
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

	// The next run finds the dead one's lease expired.
	c.advance(testTTL + time.Second)
	next := ledger.NewOwner("next")
	acquire(t, l, ledger.NewBatch{ID: b.ID}, next)
	rec, err := l.RecoverInflight(ctx, b.Seq, next)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]ledger.State{2: ledger.StateUnknown, 3: ledger.StateFailed, 4: ledger.StateUnknown, 5: ledger.StateUnknown, 6: ledger.StateUnknown,
		7: ledger.StateQueued, 8: ledger.StateUnknown, 9: ledger.StateQueued}
	for line, s := range want {
		if got := getRow(t, l, b.Seq, line).State; got != s {
			t.Errorf("line %d: %s after recovery, want %s", line, got, s)
		}
	}
	if rec.Rows != 5 {
		t.Errorf("RecoverInflight moved %d rows, want 5 (2, 4, 5, 6 dispatched; 8 inflight)", rec.Rows)
	}
	// A recovered row may have been sent: it counts as sent.
	for _, line := range []int{2, 4, 5, 6} {
		if r := getRow(t, l, b.Seq, line); r.Attempts != 1 || r.FirstSent.IsZero() {
			t.Errorf("line %d: attempts=%d first_sent=%v after recovery, want 1 and a time", line, r.Attempts, r.FirstSent)
		}
	}
	if rec, err := l.RecoverInflight(ctx, b.Seq, next); err != nil || rec.Rows != 0 {
		t.Errorf("second RecoverInflight = %d, %v; want nothing left", rec.Rows, err)
	}
}

// A run paused past its lease and taken over writes nothing when it
// resumes: not its outcomes, not a new dispatch, not the deletion of
// dispatches on Close. The new holder settles its rows by enquiry, and
// what the new holder dispatched stays in flight, recoverable.
func (s suite) testStaleWriterWritesNothingAfterTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := s.leasedTo(t, runA, "t", 10) // lines 2..11
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2, 3) // A sends both, then is paused before recording

	takeover(t, l, c, b, runB)
	for _, line := range []int{2, 3} {
		if s := getRow(t, l, b.Seq, line).State; s != ledger.StateUnknown {
			t.Fatalf("line %d after the takeover: %s, want unknown", line, s)
		}
	}
	wb := writerOf(t, l, b.Seq, runB)
	dispatch(t, wb, 4, 5, 6) // B is sending these

	// A resumes.
	if err := wa.Record(ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0, TxnID: "T2"}); err != nil {
		t.Fatalf("Record is queued, its error comes later: %v", err)
	}
	if err := wa.Flush(ctx); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's Flush after the takeover = %v, want ErrLeaseLost", err)
	}
	if got, err := wa.Dispatch(ctx, []int{7}); !errors.Is(err, ledger.ErrLeaseLost) || len(got) != 0 {
		t.Errorf("A's Dispatch after the takeover = %v, %v; want ErrLeaseLost and nothing", got, err)
	}
	if err := wa.Close(); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's Close = %v, want ErrLeaseLost", err)
	}
	want := map[int]ledger.State{2: ledger.StateUnknown, 3: ledger.StateUnknown, 4: ledger.StateInflight, 5: ledger.StateInflight, 6: ledger.StateInflight, 7: ledger.StateQueued}
	for line, s := range want {
		if got := getRow(t, l, b.Seq, line).State; got != s {
			t.Errorf("line %d after A resumed: %s, want %s", line, got, s)
		}
	}

	// B dies; the next holder finds what B had in flight.
	c2 := ledger.NewOwner("run-c")
	c.advance(testTTL + time.Second)
	acquire(t, l, ledger.NewBatch{ID: b.ID}, c2)
	if rec, err := l.RecoverInflight(ctx, b.Seq, c2); err != nil || rec.Rows != 3 {
		t.Errorf("RecoverInflight after B died = %d, %v; want 3 (lines 4-6)", rec.Rows, err)
	}
	// B never learns it died: its Close writes nothing either.
	_ = wb.Close()
	for _, line := range []int{4, 5, 6} {
		if s := getRow(t, l, b.Seq, line).State; s != ledger.StateUnknown {
			t.Errorf("line %d after B's Close: %s, want unknown", line, s)
		}
	}
}

// A stale run's "dispatched but never sent" must not overwrite the row the
// new holder re-sent, nor get its true outcome refused.
func (s suite) testStaleRequeueLeavesNewHoldersRowAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := s.leasedTo(t, runA, "q", 4)
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2) // waits in A's pipeline, unsent, when A is paused

	takeover(t, l, c, b, runB)
	wb := writerOf(t, l, b.Seq, runB)
	remark(t, wb, 2, 1) // the enquiry found nothing: B re-sends (recovered, it counts one send)

	_ = wa.Record(ledger.Update{Line: 2, To: ledger.StateQueued, Code: -1})
	if err := wa.Flush(ctx); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's Flush = %v, want ErrLeaseLost", err)
	}
	if s := getRow(t, l, b.Seq, 2).State; s != ledger.StateInflight {
		t.Errorf("line 2 after A's stale requeue: %s, want inflight (B is sending it)", s)
	}
	record(t, wb, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0, TxnID: "T"})
	closeWriter(t, wb)
	if r := wb.Refused(); r != nil {
		t.Errorf("B's outcome refused: %v", r)
	}
	if r := getRow(t, l, b.Seq, 2); r.State != ledger.StateSuccess || r.ProviderTxnID != "T" {
		t.Errorf("line 2 = %s txn %q, want success T", r.State, r.ProviderTxnID)
	}
}

// A run paused before it started its writer, and taken over meanwhile,
// cannot write under the new holder's lease once it resumes.
func (s suite) testWriterOfAnOwnerWithoutTheLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, l, b := s.leasedTo(t, runA, "w", 4)
	takeover(t, l, c, b, runB)
	wb := writerOf(t, l, b.Seq, runB)
	wa := writerOf(t, l, b.Seq, runA)
	if got, err := wa.Dispatch(ctx, []int{2, 3}); !errors.Is(err, ledger.ErrLeaseLost) || len(got) != 0 {
		t.Errorf("A's Dispatch under B's lease = %v, %v; want ErrLeaseLost and nothing", got, err)
	}
	if err := wa.MarkInflight(ctx, 4, 0); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's MarkInflight under B's lease = %v, want ErrLeaseLost", err)
	}
	if got := dispatch(t, wb, 2, 3); !reflect.DeepEqual(got, []int{2, 3}) {
		t.Errorf("B's Dispatch = %v, want [2 3]", got)
	}
	// Nor may A recover B's dispatches, requeue held rows, or clear rows.
	if rec, err := l.RecoverInflight(ctx, b.Seq, runA); !errors.Is(err, ledger.ErrLeaseLost) || rec.Rows != 0 {
		t.Errorf("A's RecoverInflight = %d, %v; want ErrLeaseLost", rec.Rows, err)
	}
	if n, err := l.Move(ctx, b.Seq, runA, ledger.StateQueued, ledger.StateHeld, 0, ""); !errors.Is(err, ledger.ErrLeaseLost) || n != 0 {
		t.Errorf("A's Move = %d, %v; want ErrLeaseLost", n, err)
	}
	if err := l.ClearRows(ctx, b.Seq, runA); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's ClearRows = %v, want ErrLeaseLost", err)
	}
	for _, line := range []int{2, 3} {
		if s := getRow(t, l, b.Seq, line).State; s != ledger.StateInflight {
			t.Errorf("line %d, dispatched by B: %s, want inflight", line, s)
		}
	}
	if s := getRow(t, l, b.Seq, 4).State; s != ledger.StateQueued {
		t.Errorf("line 4: %s, want queued", s)
	}
}

// A stale writer whose rows all settled before the takeover reaches Close
// with nothing sticky: deleting its dispatches by id must still be fenced,
// since the new holder's first dispatch may reuse the same id.
func (s suite) testStaleCloseKeepsNewHoldersDispatch(t *testing.T) {
	t.Parallel()
	c, l, b := s.leasedTo(t, runA, "d", 4)
	wa := writerOf(t, l, b.Seq, runA)
	dispatch(t, wa, 2)
	record(t, wa, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 0})
	flush(t, wa) // committed while A held the lease

	takeover(t, l, c, b, runB) // deletes A's dispatch
	wb := writerOf(t, l, b.Seq, runB)
	dispatch(t, wb, 3)
	// A wrote nothing after the takeover; a store whose Close writes (the
	// SQLite store deletes its dispatches) must find the lease gone.
	if err := wa.Close(); err != nil && !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("A's Close = %v, want nil or ErrLeaseLost", err)
	}
	if s := getRow(t, l, b.Seq, 3).State; s != ledger.StateInflight {
		t.Errorf("line 3, dispatched by B: %s, want inflight", s)
	}
}
