package ledgertest

import (
	"context"
	"sync"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// A store whose writers claim rows themselves gives processes claiming at
// once disjoint rows, every queued row to exactly one of them, each in
// flight for its claimer until it has an outcome.
func (s suite) testClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := s.newDB(t)
	l := db.Open(t, Options{})
	b := seedRows(t, l, "claim", 300)
	acquire(t, l, ledger.NewBatch{ID: b.ID}, runA)
	probe := writerOf(t, l, b.Seq, runA)
	if _, ok := probe.(ledger.Claimer); !ok {
		t.Skip("this store's writers do not claim rows themselves")
	}
	var (
		mu  sync.Mutex
		got = map[int]string{}
		wg  sync.WaitGroup
	)
	owners := []ledger.Owner{runA, runB, ledger.NewOwner("run-c")}
	var claimers []ledger.Claimer
	for _, o := range owners {
		h := db.Open(t, Options{})
		if o != runA {
			if _, err := h.Acquire(ctx, ledger.NewBatch{ID: b.ID}, o, testTTL); err != nil {
				t.Fatalf("%s joins: %v", o.ID, err)
			}
		}
		claimers = append(claimers, writerOf(t, h, b.Seq, o).(ledger.Claimer))
	}
	start := make(chan struct{})
	for i, w := range claimers {
		o := owners[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				rows, err := w.Claim(ctx, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				if len(rows) > 3 {
					t.Errorf("Claim(3) claimed %d rows: one process would starve the others", len(rows))
				}
				mu.Lock()
				for _, r := range rows {
					if prev, dup := got[r.Line]; dup {
						t.Errorf("line %d claimed by %s and %s", r.Line, prev, o.ID)
					}
					got[r.Line] = o.ID
					if len(r.Request) == 0 || r.ReferenceID == "" {
						t.Errorf("line %d claimed without what sending needs: %+v", r.Line, r)
					}
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(got) != 300 {
		t.Fatalf("%d rows claimed, want every one of 300", len(got))
	}
	by := map[string]int{}
	for _, o := range got {
		by[o]++
	}
	if c := counts(t, l, b.Seq); c[ledger.StateInflight].Rows != 300 {
		t.Errorf("counts after the claims: %v, want 300 inflight", c)
	}
	// A claimed row takes its claimer's outcome, and no one else's.
	var lineA int
	for line, o := range got {
		if o == runA.ID {
			lineA = line
			break
		}
	}
	record(t, probe, ledger.Update{Line: lineA, To: ledger.StateSuccess, Code: 1})
	flush(t, probe)
	if st := getRow(t, l, b.Seq, lineA); st.State != ledger.StateSuccess || st.Attempts != 1 {
		t.Errorf("run-a's line %d after its outcome: %s attempts %d, want success 1", lineA, st.State, st.Attempts)
	}
	if len(by) < 2 {
		t.Errorf("claims by process: %v: the claims never raced, the test proved nothing", by)
	}
}
