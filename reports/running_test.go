package reports

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// TestRunningOnlyWhileRowsMayChange: a report read while another process
// holds the batch says a run is working on it, but only while a row may
// still change. Once every row is final a holder changes nothing (a
// process of a shared ledger writing its own end-of-run report while its
// peers write theirs), and the verdict is the batch's own.
func TestRunningOnlyWhileRowsMayChange(t *testing.T) {
	ctx := context.Background()
	l, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "l.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	elsewhere := ledger.Owner{ID: "peer", Host: "another-host", PID: 4242}
	batch := func(id string, r ledger.IngestRow) ledger.Batch {
		t.Helper()
		b, err := l.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: id, Header: []string{"operator", "canumber", "amount"}}, elsewhere, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		in, err := l.BeginIngest(ctx, b, elsewhere, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.AddMany(ctx, []ledger.IngestRow{r}); err != nil {
			t.Fatal(err)
		}
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		// As the commands read it: wholly recorded.
		if b, err = l.Batch(ctx, id); err != nil {
			t.Fatal(err)
		}
		return b
	}
	sending := batch("sending", ledger.IngestRow{Line: 2, ReferenceID: "R1", Operator: 311, CANumber: "CA", AmountPaise: 100, Request: []byte(`{}`)})
	final := batch("final", ledger.IngestRow{Line: 2, ReferenceID: "R2", CANumber: "CA",
		Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "bad"}})

	s, err := Build(ctx, l, sending, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Running) != 1 || s.Running[0].Host != "another-host" || s.Running[0].PID != 4242 {
		t.Errorf("a queued row and a live holder: Running = %+v, want the holder", s.Running)
	}
	if !strings.HasPrefix(s.view().Verdict, "A run is working on this batch now (pid 4242 on another-host)") ||
		len(s.Attention.Actions) == 0 || !strings.Contains(s.Attention.Actions[0], "act on nothing below") {
		t.Errorf("verdict %q, first action %q: want both to say a run is working on it", s.view().Verdict, s.Attention.Actions)
	}
	s, err = Build(ctx, l, final, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Running) != 0 || strings.Contains(s.view().Verdict, "A run is working") {
		t.Errorf("every row final: Running = %+v, verdict %q; want neither to name the holder", s.Running, s.view().Verdict)
	}
}
