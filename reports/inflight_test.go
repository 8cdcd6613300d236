package reports

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// Review: rows in flight were shown in flight "since" the batch was
// created, however long after that a run sent them. A batch recorded at
// night and sent in the morning, read an hour later, showed its rows in
// flight for a day. They are in flight since their run took them: a
// dispatch (the run's durable record that it is about to send them) or a
// mark.
func TestInFlightSinceTheRunTookThem(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)
	now := created
	clock := func() time.Time { return now }
	l, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "l.db"), sqlite.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := ledger.NewOwner("run")
	b, err := l.Acquire(ctx, ledger.NewBatch{ID: "night", ContentHash: "night", Header: []string{"operator", "canumber", "amount"}}, o, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.BeginIngest(ctx, b, o, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var rows []ledger.IngestRow
	for line := 2; line <= 4; line++ {
		rows = append(rows, ledger.IngestRow{Line: line, ReferenceID: fmt.Sprintf("R%d", line), Operator: 311, CANumber: "CA", AmountPaise: 1000, Request: []byte(`{}`)})
	}
	if _, err := in.AddMany(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	// The morning after: the run takes line 2 in a dispatch, line 3 by a
	// mark, and leaves line 4 queued.
	now = created.Add(10 * time.Hour)
	sent := now
	w, err := l.NewWriter(ctx, b.Seq, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Dispatch(ctx, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := w.MarkInflight(ctx, 3, 0); err != nil {
		t.Fatal(err)
	}
	if b, err = l.Batch(ctx, "night"); err != nil {
		t.Fatal(err)
	}
	now = sent.Add(time.Hour)
	s, err := Build(ctx, l, b, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.AtRisk.OutcomeUnknown.Rows; got != 2 {
		t.Fatalf("%d rows of unknown outcome, want the 2 in flight", got)
	}
	for _, r := range s.AtRisk.OutcomeUnknown.Listed {
		if !r.Since.Equal(sent) || r.UnresolvedSeconds != 3600 {
			t.Errorf("line %d (%s): since %v, unresolved %ds; want since %v, 3600s (when the run took it)", r.Line, r.State, r.Since, r.UnresolvedSeconds, sent)
		}
	}
	if got := s.AtRisk.OutcomeUnknown.OldestSeconds; got != 3600 {
		t.Errorf("outcome unknown: oldest %ds, want 3600", got)
	}
	// A row never sent waits since the batch was recorded.
	if q := s.AtRisk.NotYetSent.Listed; len(q) != 1 || !q[0].Since.Equal(created) {
		t.Errorf("not yet sent: %+v, want line 4 since %v", q, created)
	}
	if txt := s.TextSummary(); !strings.Contains(txt, "outcome unknown 2 rows, ₹20.00 (oldest 1h0m0s)") {
		t.Errorf("text summary does not give the rows in flight an hour:\n%s", txt)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
