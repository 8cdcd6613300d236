package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

func (s suite) testIngestQueued(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	rows := rowsFor("q", 3)
	b, states := ingest(t, l, "b1", rows)
	for i, s := range states {
		if s != ledger.StateQueued {
			t.Errorf("line %d: Add state %s, want queued", rows[i].Line, s)
		}
	}
	if !b.Ready || b.RowsTotal != 3 {
		t.Errorf("batch Ready=%v RowsTotal=%d, want true 3", b.Ready, b.RowsTotal)
	}
	for _, want := range rows {
		got := getRow(t, l, b.Seq, want.Line)
		if got.ReferenceID != want.ReferenceID || got.Operator != want.Operator || got.CANumber != want.CANumber ||
			got.AmountPaise != want.AmountPaise || string(got.Request) != string(want.Request) {
			t.Errorf("line %d: got %+v, want fields of %+v", want.Line, got, want)
		}
		if got.State != ledger.StateQueued || got.Raw != nil || got.ResponseCode != -1 || got.Attempts != 0 ||
			!got.FirstSent.IsZero() || got.ErrorCode != "" || got.Message != "" {
			t.Errorf("line %d: got %+v, want a fresh queued row", want.Line, got)
		}
	}
	if _, err := l.Row(context.Background(), b.Seq, 99); err == nil {
		t.Error("Row(99) of a 3-row batch succeeded")
	}
}

func (s suite) testIngestDuplicateInBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	in, b, _ := beginIngest(t, l, "b1")
	first := okRow(2, "R1")
	again := okRow(5, "R1")
	again.Raw = []string{"1", "CA5", "5.00", "R1"}
	for _, tc := range []struct {
		r       ledger.IngestRow
		want    ledger.State
		wantMsg string
	}{
		{first, ledger.StateQueued, ""},
		{okRow(3, "R2"), ledger.StateQueued, ""},
		{again, ledger.StateRejected, "line 2"},
	} {
		s, msg, err := add(ctx, in, tc.r)
		if err != nil {
			t.Fatalf("Add(line %d): %v", tc.r.Line, err)
		}
		if s != tc.want || !strings.Contains(msg, tc.wantMsg) {
			t.Errorf("Add(line %d) = %s %q, want %s mentioning %q", tc.r.Line, s, msg, tc.want, tc.wantMsg)
		}
	}
	// The same line twice is a caller bug, reported, not stored.
	if _, _, err := add(ctx, in, okRow(3, "R9")); err == nil {
		t.Error("Add of line 3 twice succeeded")
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	got := getRow(t, l, b.Seq, 5)
	if got.State != ledger.StateRejected || got.ErrorCode != "duplicate_referenceid" || got.ErrorColumn != "referenceid" ||
		!strings.Contains(got.Message, "line 2") {
		t.Errorf("line 5 = %+v, want rejected duplicate_referenceid naming line 2", got)
	}
	if !reflect.DeepEqual(got.Raw, again.Raw) {
		t.Errorf("line 5 Raw = %q, want %q", got.Raw, again.Raw)
	}
	if got.Request != nil {
		t.Errorf("line 5 Request = %q, want none for a row never sent", got.Request)
	}
	if s := getRow(t, l, b.Seq, 2).State; s != ledger.StateQueued {
		t.Errorf("line 2 = %s, want queued", s)
	}
}

func (s suite) testIngestConflict(t *testing.T) {
	t.Parallel()
	base := okRow(2, "SHARED")
	for _, tc := range []struct {
		name     string
		edit     func(*ledger.IngestRow)
		wantCode string
		wantMsg  []string
		notMsg   []string
	}{
		{"same details", func(*ledger.IngestRow) {}, "conflict",
			[]string{"batch b1 line 2"}, []string{"different"}},
		{"different amount", func(r *ledger.IngestRow) { r.AmountPaise = 1250 }, "conflict_drift",
			[]string{"batch b1 line 2", "different details", "amount 2.00 there, 12.50 here"}, []string{"canumber"}},
		{"different canumber", func(r *ledger.IngestRow) { r.CANumber = "OTHER" }, "conflict_drift",
			[]string{"batch b1 line 2", "different details", "canumber differs"}, []string{"amount"}},
		{"both differ", func(r *ledger.IngestRow) { r.CANumber, r.AmountPaise = "OTHER", 1 }, "conflict_drift",
			[]string{"amount 2.00 there, 0.01 here", "canumber differs"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := s.open(t, Options{})
			ingest(t, l, "b1", []ledger.IngestRow{base, okRow(3, "OWN-1")})
			r := base
			r.Line = 7
			r.Raw = []string{"raw", "cells"}
			tc.edit(&r)
			b2, states := ingest(t, l, "b2", []ledger.IngestRow{okRow(2, "OWN-2"), r})
			if states[1] != ledger.StateConflict {
				t.Fatalf("Add = %s, want conflict", states[1])
			}
			got := getRow(t, l, b2.Seq, 7)
			if got.State != ledger.StateConflict || got.ErrorCode != tc.wantCode || got.ErrorColumn != "referenceid" {
				t.Errorf("row = %s %s/%s, want conflict %s/referenceid", got.State, got.ErrorCode, got.ErrorColumn, tc.wantCode)
			}
			for _, w := range tc.wantMsg {
				if !strings.Contains(got.Message, w) {
					t.Errorf("message %q does not say %q", got.Message, w)
				}
			}
			for _, w := range tc.notMsg {
				if strings.Contains(got.Message, w) {
					t.Errorf("message %q says %q", got.Message, w)
				}
			}
			if !reflect.DeepEqual(got.Raw, r.Raw) {
				t.Errorf("Raw = %q, want %q", got.Raw, r.Raw)
			}
			// A conflict row does not hold the referenceid: a third batch
			// reusing it conflicts with the first batch again.
			b3, states := ingest(t, l, "b3", []ledger.IngestRow{base})
			if states[0] != ledger.StateConflict {
				t.Errorf("third batch: Add = %s, want conflict", states[0])
			}
			if m := getRow(t, l, b3.Seq, 2).Message; !strings.Contains(m, "batch b1 line 2") {
				t.Errorf("third batch message %q does not name batch b1 line 2", m)
			}
		})
	}
}

func (s suite) testIngestProblemRows(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	bad := ledger.IngestRow{Line: 2, ReferenceID: "R1", Raw: []string{"7", "CA1", "12.345", "R1"},
		Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: `amount "12.345" has more than 2 decimals`}}
	noRef := ledger.IngestRow{Line: 3, Raw: []string{"7", "CA2", "1", ""},
		Problem: &ledger.Problem{Code: "missing", Column: "referenceid", Message: "referenceid is required"}}
	noRef2 := noRef
	noRef2.Line = 4
	// A rejected row holds no referenceid: a later valid row may use it.
	valid := okRow(5, "R1")
	b, states := ingest(t, l, "b1", []ledger.IngestRow{bad, noRef, noRef2, valid})
	if want := []ledger.State{ledger.StateRejected, ledger.StateRejected, ledger.StateRejected, ledger.StateQueued}; !reflect.DeepEqual(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	for _, want := range []ledger.IngestRow{bad, noRef, noRef2} {
		got := getRow(t, l, b.Seq, want.Line)
		if got.State != ledger.StateRejected || got.ErrorCode != want.Problem.Code || got.ErrorColumn != want.Problem.Column ||
			got.Message != want.Problem.Message || !reflect.DeepEqual(got.Raw, want.Raw) {
			t.Errorf("line %d = %+v, want rejected with %+v and raw %q", want.Line, got, *want.Problem, want.Raw)
		}
	}
	c := counts(t, l, b.Seq)
	if c[ledger.StateRejected].Rows != 3 || c[ledger.StateQueued].Rows != 1 || c.Total().Rows != 4 {
		t.Errorf("counts = %v, want 3 rejected 1 queued", c)
	}
}

func (s suite) testIngestChunks(t *testing.T) {
	t.Parallel()
	for _, n := range []int{bigIngest} {
		t.Run(fmt.Sprintf("%d rows", n), func(t *testing.T) {
			ctx := context.Background()
			c := newClock()
			l := s.open(t, Options{Now: c.now})
			rows := rowsFor("c", n)
			// The last row repeats the first row's referenceid across a
			// chunk commit.
			rows[n-1].ReferenceID = rows[0].ReferenceID
			o := ledger.NewOwner("run")
			b := acquire(t, l, ledger.NewBatch{ID: "big", ContentHash: "h"}, o)
			in, err := l.BeginIngest(ctx, b, o, testTTL)
			if err != nil {
				t.Fatal(err)
			}
			// The ingest takes longer than the lease by the clock: the
			// store renews the lease as it goes.
			var wantPaise int64
			for start := 0; start < n; start += 64 {
				part := rows[start:min(start+64, n)]
				c.advance(time.Duration(len(part)) * 10 * time.Millisecond)
				if _, err := in.AddMany(ctx, part); err != nil {
					t.Fatalf("AddMany(lines %d..): %v", part[0].Line, err)
				}
				for _, r := range part {
					wantPaise += r.AmountPaise
				}
			}
			if got := in.Rows(); got != int64(n) {
				t.Errorf("Rows() = %d, want %d", got, n)
			}
			// Half-ingested: committed chunks are in, but not sendable yet.
			if got, err := l.Batch(ctx, "big"); err != nil || got.Ready {
				t.Errorf("before Finish: Batch = %+v, %v; want not ready", got, err)
			}
			if err := in.Finish(ctx); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if err := in.Finish(ctx); err == nil {
				t.Error("second Finish succeeded")
			}
			got, err := l.Batch(ctx, "big")
			if err != nil {
				t.Fatal(err)
			}
			if !got.Ready || got.RowsTotal != int64(n) {
				t.Errorf("Batch Ready=%v RowsTotal=%d, want true %d", got.Ready, got.RowsTotal, n)
			}
			cnt := counts(t, l, b.Seq)
			if tot := cnt.Total(); tot.Rows != int64(n) || tot.Paise != wantPaise {
				t.Errorf("Counts.Total = %+v, want %d rows %d paise", tot, n, wantPaise)
			}
			if cnt[ledger.StateQueued].Rows != int64(n-1) || cnt[ledger.StateRejected].Rows != 1 {
				t.Errorf("counts = %v, want %d queued 1 rejected", cnt, n-1)
			}
			if r := getRow(t, l, b.Seq, rows[n-1].Line); r.ErrorCode != "duplicate_referenceid" {
				t.Errorf("last line = %+v, want duplicate_referenceid", r)
			}
			// The lease runs from the ingest's last commits, not from
			// Acquire, which the clock puts more than a lease ago.
			if !l.Shared() {
				if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "big", ContentHash: "h"}, ledger.NewOwner("other"), testTTL); !errors.Is(err, ledger.ErrBatchLocked) {
					t.Errorf("Acquire by another after a long ingest: %v, want ErrBatchLocked", err)
				}
			}
			if err := l.Renew(ctx, "big", o, testTTL); err != nil {
				t.Errorf("Renew after a long ingest: %v", err)
			}
		})
	}
}

func (s suite) testIngestAbort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := s.newDB(t)
	l := db.Open(t, Options{})
	in, b, _ := beginIngest(t, l, "refused")
	rows := rowsFor("a", bigIngest) // chunks committed, one open
	for start := 0; start < len(rows); start += 100 {
		if _, err := in.AddMany(ctx, rows[start:min(start+100, len(rows))]); err != nil {
			t.Fatalf("AddMany(line %d..): %v", rows[start].Line, err)
		}
	}
	if err := in.Abort(ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if _, err := l.Batch(ctx, "refused"); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf("Batch after Abort: %v, want ErrNoBatch", err)
	}
	if n := counts(t, l, b.Seq).Total().Rows; n != 0 {
		t.Errorf("%d rows left after Abort, want 0", n)
	}
	// The referenceids, from the committed chunk and the open one, are
	// free again.
	reuse := []ledger.IngestRow{rows[0], rows[8191], rows[8192], rows[len(rows)-1]}
	later, states := ingest(t, l, "later", reuse)
	for i, s := range states {
		if s != ledger.StateQueued {
			t.Errorf("later batch line %d: %s, want queued", reuse[i].Line, s)
		}
	}
	if later.RowsTotal != int64(len(reuse)) {
		t.Errorf("later RowsTotal = %d, want %d", later.RowsTotal, len(reuse))
	}
	db.Check(t)
}

func (s suite) testIngestLeaseLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	me, other := ledger.NewOwner("run-a"), ledger.NewOwner("run-b")
	b := acquire(t, l, ledger.NewBatch{ID: "b1", ContentHash: "h"}, me)
	c.advance(testTTL + time.Second)
	acquire(t, l, ledger.NewBatch{ID: "b1", ContentHash: "h"}, other)
	if _, err := l.BeginIngest(ctx, b, me, testTTL); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("BeginIngest by stale owner: %v, want ErrLeaseLost", err)
	}
	// The writer connection was given back: the new owner can go on.
	in, err := l.BeginIngest(ctx, b, other, testTTL)
	if err != nil {
		t.Fatalf("BeginIngest by holder: %v", err)
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIngestAbortAfterFinish: Abort mirrors Rollback, so the idiom
// `defer in.Abort(ctx)` must not destroy a batch whose Finish succeeded.
func (s suite) testIngestAbortAfterFinish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	in, _, _ := beginIngest(t, l, "b1")
	for _, r := range rowsFor("f", 3) {
		if _, _, err := add(ctx, in, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Abort(ctx); err != nil {
		t.Errorf("Abort after Finish: %v, want nil (no-op)", err)
	}
	got, err := l.Batch(ctx, "b1")
	if err != nil {
		t.Fatalf("Batch after Abort-after-Finish: %v", err)
	}
	if !got.Ready || counts(t, l, got.Seq).Total().Rows != 3 {
		t.Errorf("batch = %+v with %v, want ready with 3 rows", got, counts(t, l, got.Seq))
	}
}

// TestClearRowsReady: a ready batch's rows are the record of what was sent;
// ClearRows is for abandoned ingests only.
func (s suite) testClearRowsReady(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, _ := ingest(t, l, "b1", rowsFor("c", 3))
	w := newWriter(t, l, b.Seq)
	markInflight(t, w, 2)
	record(t, w, ledger.Update{Line: 2, To: ledger.StateSuccess, Code: 1})
	closeWriter(t, w)
	if err := l.ClearRows(ctx, b.Seq, testOwner); err == nil {
		t.Error("ClearRows of a ready batch succeeded")
	}
	got, err := l.Batch(ctx, "b1")
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if c := counts(t, l, b.Seq); !got.Ready || c[ledger.StateSuccess].Rows != 1 || c.Total().Rows != 3 {
		t.Errorf("batch = %+v with %v, want ready, 1 success of 3", got, c)
	}
}

// AddMany must give each row exactly what adding it alone would: the chunked
// insert is only a faster way to the same ledger.
func (s suite) testAddManyMatchesOneByOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mixed := func() []ledger.IngestRow {
		var rs []ledger.IngestRow
		for i := range 3*addChunk + 7 {
			line := i + 2
			r := okRow(line, fmt.Sprintf("m-%d", line))
			switch {
			case i%11 == 3: // repeats a line a few rows up, often in the same chunk
				r.ReferenceID = fmt.Sprintf("m-%d", line-3)
			case i%13 == 5: // held by the other batch, same details
				r = okRow(line, fmt.Sprintf("o-%d", line))
			case i%17 == 6: // held by the other batch, different amount
				r = okRow(line, fmt.Sprintf("o-%d", line))
				r.AmountPaise++
			case i%19 == 7:
				r = ledger.IngestRow{Line: line, Raw: []string{"x"}, Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "bad"}}
			case i%7 == 2: // retries a row no one retries yet
				r.RetryOf = fmt.Sprintf("orig:%d", line)
			case i%23 == 9: // retries the row a line a few rows up (i%7 == 2) retries
				r.RetryOf = fmt.Sprintf("orig:%d", line-1-(i+4)%7)
			case i%29 == 10: // retries a row the other batch retries
				r.RetryOf = fmt.Sprintf("orig-o:%d", line)
			case i%31 == 12: // the referenceid of the row just above, refused for what it retries: free
				r = okRow(line, fmt.Sprintf("m-%d", line-1))
				r.RetryOf = fmt.Sprintf("again:%d", line)
			case i%31 == 13: // retries what the row above does, which comes first
				r.RetryOf = fmt.Sprintf("again:%d", line-1)
			}
			if i%31 == 11 {
				r = okRow(line, fmt.Sprintf("m-%d", line))
				r.RetryOf = fmt.Sprintf("orig-o:%d", line)
			}
			rs = append(rs, r)
		}
		return rs
	}
	other := func(l ledger.Store) {
		var rs []ledger.IngestRow
		for line := 2; line < 3*addChunk+9; line++ {
			r := okRow(line, fmt.Sprintf("o-%d", line))
			r.RetryOf = fmt.Sprintf("orig-o:%d", line)
			rs = append(rs, r)
		}
		ingest(t, l, "other", rs)
	}
	type result struct {
		ledger.Added
		Row ledger.Row
	}
	run := func(many bool) []result {
		l := s.open(t, Options{})
		other(l)
		in, b, _ := beginIngest(t, l, "b")
		rows := mixed()
		var added []ledger.Added
		if many {
			// Uneven calls: chunks straddle the calls.
			for _, part := range [][]ledger.IngestRow{rows[:5], rows[5 : 5+2*addChunk], rows[5+2*addChunk:]} {
				a, err := in.AddMany(ctx, part)
				if err != nil {
					t.Fatal(err)
				}
				added = append(added, a...)
			}
		} else {
			for _, r := range rows {
				s, msg, err := add(ctx, in, r)
				if err != nil {
					t.Fatal(err)
				}
				added = append(added, ledger.Added{State: s, Message: msg})
			}
		}
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		out := make([]result, len(rows))
		for i, r := range rows {
			row := getRow(t, l, b.Seq, r.Line)
			row.Updated = time.Time{}
			out[i] = result{added[i], row}
		}
		return out
	}
	one, many := run(false), run(true)
	states := map[ledger.State]int{}
	codes := map[string]int{}
	for i := range one {
		states[one[i].State]++
		codes[one[i].Row.ErrorCode]++
		if !reflect.DeepEqual(one[i], many[i]) {
			t.Errorf("row %d:\n Add     %+v\n AddMany %+v", i, one[i], many[i])
		}
	}
	if states[ledger.StateQueued] == 0 || states[ledger.StateRejected] < 2 || states[ledger.StateConflict] < 2 {
		t.Errorf("states %v: the mix should hold queued, rejected and conflict rows", states)
	}
	if codes["duplicate_retryof"] < 2 || codes["conflict_retry"] < 2 {
		t.Errorf("codes %v: the mix should hold rows refused for the row they retry", codes)
	}
}

func (s suite) testAddManyNeedsBody(t *testing.T) {
	t.Parallel()
	l := s.open(t, Options{})
	in, _, _ := beginIngest(t, l, "b")
	r := okRow(2, "nobody")
	r.Request = nil
	if _, err := in.AddMany(context.Background(), []ledger.IngestRow{okRow(3, "fine"), r}); err == nil ||
		!strings.Contains(err.Error(), "line 2") {
		t.Fatalf("AddMany with a bodiless sendable row: %v, want an error naming line 2", err)
	}
}

// testIngestRetry: a row that retries another (RetryOf) holds it as a
// sendable row holds its referenceid: a second row retrying it, under
// another referenceid, is a conflict in another batch, rejected in the
// same one; a row never sent does not hold it.
func (s suite) testIngestRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	retry := func(line int, ref, of string) ledger.IngestRow {
		r := okRow(line, ref)
		r.RetryOf = of
		return r
	}
	bad := retry(4, "R1-4", "orig:9")
	bad.Request, bad.Raw = nil, []string{"x"}
	bad.Problem = &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "bad"}
	b1, states := ingest(t, l, "r1", []ledger.IngestRow{retry(2, "R1-2", "orig:5"), retry(3, "R1-3", "orig:5"), bad})
	if want := []ledger.State{ledger.StateQueued, ledger.StateRejected, ledger.StateRejected}; !reflect.DeepEqual(states, want) {
		t.Fatalf("first retry file: %v, want %v", states, want)
	}
	if got := getRow(t, l, b1.Seq, 2); got.RetryOf != "orig:5" {
		t.Errorf("RetryOf read back %q, want orig:5", got.RetryOf)
	}
	if got := getRow(t, l, b1.Seq, 3); got.ErrorCode != "duplicate_retryof" || got.ErrorColumn != "retryof" ||
		!strings.Contains(got.Message, "line 2 of this file") || got.RetryOf != "orig:5" {
		t.Errorf("same file, same row retried: %s %s/%s %q (retry of %q)", got.State, got.ErrorCode, got.ErrorColumn, got.Message, got.RetryOf)
	}
	// The second export of the same rows, under new referenceids.
	b2, states := ingest(t, l, "r2", []ledger.IngestRow{retry(2, "R2-2", "orig:5"), retry(3, "R2-3", "orig:9"), okRow(4, "R1-4")})
	if want := []ledger.State{ledger.StateConflict, ledger.StateQueued, ledger.StateQueued}; !reflect.DeepEqual(states, want) {
		t.Fatalf("second retry file: %v, want %v", states, want)
	}
	got := getRow(t, l, b2.Seq, 2)
	if got.ErrorCode != "conflict_retry" || got.ErrorColumn != "retryof" || !strings.Contains(got.Message, "batch r1 line 2 (queued)") ||
		!strings.Contains(got.Message, "paid twice") {
		t.Errorf("second retry of orig:5: %s %s/%s %q", got.State, got.ErrorCode, got.ErrorColumn, got.Message)
	}
	// A conflict row does not hold it either: a third file conflicts
	// with the first again.
	b3, states := ingest(t, l, "r3", []ledger.IngestRow{retry(2, "R3-2", "orig:5")})
	if states[0] != ledger.StateConflict || !strings.Contains(getRow(t, l, b3.Seq, 2).Message, "batch r1 line 2") {
		t.Errorf("third retry of orig:5: %s %q", states[0], getRow(t, l, b3.Seq, 2).Message)
	}
	if _, err := l.Batch(ctx, "r3"); err != nil {
		t.Fatal(err)
	}
}
