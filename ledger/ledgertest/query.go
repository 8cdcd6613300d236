package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// mixedBatch ingests 30 rows (lines 2..31) and drives them through the
// writer into a mix of states by line: every 5th rejected at ingest, then
// line%4==0 success, line%4==1 inflight, line%4==2 held, the rest queued.
// It returns the batch and the expected state of every line.
func mixedBatch(t *testing.T, l ledger.Store) (ledger.Batch, map[int]ledger.State) {
	t.Helper()
	var rows []ledger.IngestRow
	want := map[int]ledger.State{}
	for line := 2; line <= 31; line++ {
		r := okRow(line, "mx-"+strconv.Itoa(line))
		if line%3 == 0 {
			// Some rows retry another's (a copy keeps which).
			r.RetryOf = "earlier:" + strconv.Itoa(line)
		}
		if line%5 == 0 {
			r = ledger.IngestRow{Line: line, ReferenceID: r.ReferenceID, AmountPaise: r.AmountPaise, Operator: r.Operator,
				Raw: []string{"bad"}, RetryOf: r.RetryOf, Problem: &ledger.Problem{Code: "bad", Column: "amount", Message: "bad"}}
			want[line] = ledger.StateRejected
		}
		rows = append(rows, r)
	}
	b, _ := ingest(t, l, "mixed", rows)
	w := newWriter(t, l, b.Seq)
	for line := 2; line <= 31; line++ {
		if want[line] == ledger.StateRejected {
			continue
		}
		switch line % 4 {
		case 0:
			markInflight(t, w, line)
			record(t, w, ledger.Update{Line: line, To: ledger.StateSuccess, Code: 1})
			want[line] = ledger.StateSuccess
		case 1:
			markInflight(t, w, line)
			want[line] = ledger.StateInflight
		case 2:
			record(t, w, ledger.Update{Line: line, To: ledger.StateHeld, Code: -1, Message: "operator down"})
			want[line] = ledger.StateHeld
		default:
			want[line] = ledger.StateQueued
		}
	}
	closeWriter(t, w)
	return b, want
}

func (s suite) testPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, want := mixedBatch(t, l)
	for _, s := range ledger.States {
		for _, limit := range []int{1, 3, 100} {
			t.Run(string(s)+"/limit "+strconv.Itoa(limit), func(t *testing.T) {
				var wantLines, gotLines []int
				for line := 2; line <= 31; line++ {
					if want[line] == s {
						wantLines = append(wantLines, line)
					}
				}
				after, pages := 0, 0
				for {
					page, err := l.Page(ctx, b.Seq, s, after, limit)
					if err != nil {
						t.Fatalf("Page: %v", err)
					}
					if len(page) > limit {
						t.Fatalf("page of %d rows, limit %d", len(page), limit)
					}
					if len(page) == 0 {
						break
					}
					pages++
					for _, r := range page {
						if r.State != s || r.Batch != b.Seq {
							t.Errorf("line %d: state %s batch %d in a page of %s", r.Line, r.State, r.Batch, s)
						}
						gotLines = append(gotLines, r.Line)
					}
					after = page[len(page)-1].Line
				}
				if !reflect.DeepEqual(gotLines, wantLines) {
					t.Errorf("lines = %v, want %v", gotLines, wantLines)
				}
				if min := (len(wantLines) + limit - 1) / limit; pages != min {
					t.Errorf("%d pages, want %d", pages, min)
				}
			})
		}
	}
}

// Queued pages like Page(StateQueued), with the fields sending needs.
func (s suite) testQueued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, _ := mixedBatch(t, l)
	for _, limit := range []int{1, 4, 100} {
		var want, got []ledger.Row
		for after := 0; ; {
			page, err := l.Page(ctx, b.Seq, ledger.StateQueued, after, limit)
			if err != nil || len(page) == 0 {
				break
			}
			for _, r := range page {
				want = append(want, ledger.Row{Batch: r.Batch, Line: r.Line, ReferenceID: r.ReferenceID, Operator: r.Operator,
					CANumber: r.CANumber, AmountPaise: r.AmountPaise, Request: r.Request, State: r.State, ResponseCode: -1, RetryOf: r.RetryOf})
			}
			after = page[len(page)-1].Line
		}
		for after := 0; ; {
			page, err := l.Queued(ctx, b.Seq, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("page of %d rows, limit %d", len(page), limit)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Line
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("limit %d: Queued = %+v\nwant %+v", limit, got, want)
		}
	}
}

func (s suite) testCountsAnyEachRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, want := mixedBatch(t, l)
	wantCounts := ledger.Counts{}
	var wantTotal ledger.Tally
	for line, s := range want {
		v := wantCounts[s]
		v.Rows++
		v.Paise += int64(100 * line)
		wantCounts[s] = v
		wantTotal.Rows++
		wantTotal.Paise += int64(100 * line)
	}
	got := counts(t, l, b.Seq)
	if !reflect.DeepEqual(got, wantCounts) {
		t.Errorf("Counts = %v, want %v", got, wantCounts)
	}
	if got.Total() != wantTotal {
		t.Errorf("Total = %+v, want %+v", got.Total(), wantTotal)
	}
	for _, s := range ledger.States {
		t.Run("Any "+string(s), func(t *testing.T) {
			got, err := l.Any(ctx, b.Seq, s)
			if err != nil {
				t.Fatal(err)
			}
			if want := wantCounts[s].Rows > 0; got != want {
				t.Errorf("Any(%s) = %v, want %v", s, got, want)
			}
		})
	}
	if c := counts(t, l, b.Seq+100); len(c) != 0 || c.Total() != (ledger.Tally{}) {
		t.Errorf("Counts of a missing batch = %v, want empty", c)
	}

	var lines []int
	if err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		lines = append(lines, r.Line)
		if r.State != want[r.Line] {
			t.Errorf("EachRow line %d: %s, want %s", r.Line, r.State, want[r.Line])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 30 || lines[0] != 2 || lines[29] != 31 {
		t.Errorf("EachRow lines = %v, want 2..31 in order", lines)
	}
	stop := errors.New("stop")
	n := 0
	if err := l.EachRow(ctx, b.Seq, func(*ledger.Row) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachRow with fn error: %v after %d rows, want stop after 1", err, n)
	}
}

func (s suite) testRecoverInflight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	b, want := mixedBatch(t, l)
	other, _ := ingest(t, l, "other", rowsFor("o", 3))
	ow := newWriter(t, l, other.Seq)
	markInflight(t, ow, 2)
	closeWriter(t, ow)

	before := map[int]ledger.Row{}
	for line := range want {
		before[line] = getRow(t, l, b.Seq, line)
	}
	var wantMoved int64
	for _, s := range want {
		if s == ledger.StateInflight {
			wantMoved++
		}
	}
	// The run that marked them recovers nothing of its own: it may be
	// sending them (a shared store recovers while its run sends).
	if rec, err := l.RecoverInflight(ctx, b.Seq, testOwner); err != nil || rec.Rows != 0 {
		t.Errorf("RecoverInflight by the rows' own run = %d, %v; want 0", rec.Rows, err)
	}
	// The next run, once that one ended, recovers them.
	next := ledger.NewOwner("next")
	if err := l.Release(ctx, b.ID, testOwner); err != nil {
		t.Fatal(err)
	}
	acquire(t, l, ledger.NewBatch{ID: b.ID}, next)
	rec, err := l.RecoverInflight(ctx, b.Seq, next)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Rows != wantMoved || rec.Rows == 0 {
		t.Errorf("RecoverInflight moved %d, want %d", rec.Rows, wantMoved)
	}
	for line, s := range want {
		got := getRow(t, l, b.Seq, line)
		if s != ledger.StateInflight {
			if !reflect.DeepEqual(got, before[line]) {
				t.Errorf("line %d (%s) changed: %+v", line, s, got)
			}
			continue
		}
		if got.State != ledger.StateUnknown || !strings.Contains(got.Message, "interrupted") || got.Attempts != 1 {
			t.Errorf("line %d = %+v, want unknown, interrupted, attempts kept", line, got)
		}
	}
	if s := getRow(t, l, other.Seq, 2).State; s != ledger.StateInflight {
		t.Errorf("other batch's inflight row = %s, want untouched", s)
	}
	if rec, err := l.RecoverInflight(ctx, b.Seq, next); err != nil || rec.Rows != 0 {
		t.Errorf("second RecoverInflight = %d, %v; want 0, nil", rec.Rows, err)
	}
}

func (s suite) testMove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	rows := rowsFor("h", 12) // operators cycle 1..3 by line
	b, _ := ingest(t, l, "b1", rows)
	w := newWriter(t, l, b.Seq)
	for _, r := range rows {
		record(t, w, ledger.Update{Line: r.Line, To: ledger.StateHeld, Code: -1, Message: "operator down"})
	}
	closeWriter(t, w)

	n, err := l.Move(ctx, b.Seq, testOwner, ledger.StateHeld, ledger.StateQueued, 2, "operator back")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Move for operator 2 moved %d, want 4", n)
	}
	for _, r := range rows {
		got := getRow(t, l, b.Seq, r.Line)
		want := ledger.StateHeld
		if r.Operator == 2 {
			want = ledger.StateQueued
		}
		if got.State != want {
			t.Errorf("line %d (operator %d) = %s, want %s", r.Line, r.Operator, got.State, want)
		}
	}
	n, err = l.Move(ctx, b.Seq, testOwner, ledger.StateHeld, ledger.StateQueued, 0, "")
	if err != nil || n != 8 {
		t.Errorf("Move for every operator = %d, %v; want 8", n, err)
	}

	for _, tc := range []struct{ from, to ledger.State }{
		{ledger.StateSuccess, ledger.StateQueued},
		{ledger.StateQueued, ledger.StateSuccess},
		{ledger.StateFailed, ledger.StateInflight},
		{ledger.StateRejected, ledger.StateQueued},
	} {
		t.Run(string(tc.from)+" to "+string(tc.to), func(t *testing.T) {
			n, err := l.Move(ctx, b.Seq, testOwner, tc.from, tc.to, 0, "")
			if !errors.Is(err, ledger.ErrTransition) || n != 0 {
				t.Errorf("Move = %d, %v; want 0, ErrTransition", n, err)
			}
		})
	}
	if c := counts(t, l, b.Seq); c[ledger.StateQueued].Rows != 12 {
		t.Errorf("counts = %v, want 12 queued", c)
	}
}

func (s suite) testBatchResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	if _, err := l.Batch(ctx, ""); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf(`empty ledger: Batch("") = %v, want ErrNoBatch`, err)
	}
	if _, err := l.Batch(ctx, "latest"); !errors.Is(err, ledger.ErrNoBatch) {
		t.Errorf(`empty ledger: Batch("latest") = %v, want ErrNoBatch`, err)
	}
	first, _ := ingest(t, l, "first", rowsFor("f", 1))
	for _, id := range []string{"", "latest", "first"} {
		got, err := l.Batch(ctx, id)
		if err != nil || got.Seq != first.Seq {
			t.Errorf("one batch: Batch(%q) = %+v, %v; want first", id, got, err)
		}
	}
	second, _ := ingest(t, l, "second", rowsFor("s", 1))
	third, _ := ingest(t, l, "third", rowsFor("t", 1))
	for _, tc := range []struct {
		id      string
		want    int64
		wantErr error
	}{
		{"", 0, ledger.ErrAmbiguousBatch},
		{"latest", third.Seq, nil},
		{"first", first.Seq, nil},
		{"second", second.Seq, nil},
		{"nope", 0, ledger.ErrNoBatch},
	} {
		t.Run("id "+tc.id, func(t *testing.T) {
			got, err := l.Batch(ctx, tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Batch(%q) error = %v, want %v", tc.id, err, tc.wantErr)
			}
			if err == nil && got.Seq != tc.want {
				t.Errorf("Batch(%q) = seq %d, want %d", tc.id, got.Seq, tc.want)
			}
			if tc.wantErr == ledger.ErrAmbiguousBatch && !strings.Contains(err.Error(), "--batch") {
				t.Errorf("error %q gives no hint", err)
			}
		})
	}
	bs, err := l.Batches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	if want := []string{"first", "second", "third"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Batches = %v, want %v", ids, want)
	}
}

// BatchesWithContent finds a file's batches by content hash, oldest first;
// HasRefsStartingWith and RefHolders look at sendable rows only.
func (s suite) testBatchesWithContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := s.open(t, Options{})
	for _, id := range []string{"one", "two", "three"} {
		in, _, o := beginIngest(t, l, id)
		rows := []ledger.IngestRow{okRow(2, ref12("s", id)+"-2"), {Line: 3, ReferenceID: ref12("r", id) + "-3", Raw: []string{"x"},
			Problem: &ledger.Problem{Code: "bad", Column: "amount", Message: "bad"}}}
		if _, err := in.AddMany(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, id, o); err != nil {
			t.Fatal(err)
		}
	}
	// beginIngest names the content "hash-" + id: give two the same.
	same := ledger.NewOwner("same")
	acquire(t, l, ledger.NewBatch{ID: "four", ContentHash: "hash-two"}, same)
	bs, err := l.BatchesWithContent(ctx, "hash-two")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	if want := []string{"two", "four"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("BatchesWithContent(hash-two) = %v, want %v", ids, want)
	}
	if bs, err := l.BatchesWithContent(ctx, "nope"); err != nil || len(bs) != 0 {
		t.Errorf("BatchesWithContent(nope) = %v, %v; want none", bs, err)
	}
	two, err := l.Batch(ctx, "two")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefixes []string
		want     bool
	}{
		{[]string{ref12("s", "two")}, true},
		{[]string{"zzz", ref12("s", "two")}, true},
		{[]string{ref12("s", "one")}, false}, // another batch's
		{[]string{ref12("r", "two")}, false}, // a rejected row holds nothing
		{[]string{ref12("s", "tw")}, false},  // the whole 12 characters
		{nil, false},
	} {
		got, err := l.HasRefsStartingWith(ctx, two.Seq, tc.prefixes...)
		if err != nil || got != tc.want {
			t.Errorf("HasRefsStartingWith(%q) = %v, %v; want %v", tc.prefixes, got, err, tc.want)
		}
	}
	one, err := l.Batch(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	// RefHolders finds sendable rows in any batch, never a rejected one,
	// and looks up more referenceids than one query takes.
	refs := []string{ref12("s", "one") + "-2", ref12("s", "two") + "-2", ref12("r", "two") + "-3", "nobody"}
	for i := range 2500 {
		refs = append(refs, fmt.Sprintf("absent-%d", i))
	}
	refs = append(refs, ref12("s", "three")+"-2")
	three, err := l.Batch(ctx, "three")
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.RefHolders(ctx, refs)
	want := map[string]ledger.RefHolder{ref12("s", "one") + "-2": {Batch: one.Seq, Line: 2, State: ledger.StateQueued},
		ref12("s", "two") + "-2": {Batch: two.Seq, Line: 2, State: ledger.StateQueued}, ref12("s", "three") + "-2": {Batch: three.Seq, Line: 2, State: ledger.StateQueued}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("RefHolders = %v, %v; want %v", got, err, want)
	}
	if got, err := l.RefHolders(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("RefHolders(nil) = %v, %v; want none", got, err)
	}
}

// ref12 is a 12-character referenceid prefix: kind, '-', id padded with dots.
func ref12(kind, id string) string { return fmt.Sprintf("%.12s", kind+"-"+id+"............") }

// testEachRowInFlightSince: EachRow says when a run took each row in flight
// (a dispatch, or a mark), so that a report read the morning after shows
// how long they have really been in flight; no other row has the time.
func (s suite) testEachRowInFlightSince(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClock()
	l := s.open(t, Options{Now: c.now})
	b := seedRows(t, l, "f", 4) // lines 2..5
	c.advance(10 * time.Hour)
	w := newWriter(t, l, b.Seq)
	dispatched := c.now()
	dispatch(t, w, 2, 3)
	c.advance(time.Minute)
	marked := c.now()
	markInflight(t, w, 4)
	c.advance(time.Minute)
	record(t, w, ledger.Update{Line: 3, To: ledger.StateSuccess, Code: 1, Message: "ok"})
	flush(t, w)
	want := map[int]time.Time{2: dispatched, 4: marked}
	if err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		if !r.InFlightSince.Equal(want[r.Line]) {
			t.Errorf("line %d (%s): in flight since %v, want %v", r.Line, r.State, r.InFlightSince, want[r.Line])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
