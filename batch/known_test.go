package batch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// A file sent again from another ledger (a mistyped --ledger opens a new,
// empty one) stops before its first Recharge: status enquiries about its
// first rows find them at the provider. Sent whole, the rows the provider
// failed without keeping their referenceid would be charged again: paid
// twice where a person had already sent them under new referenceids. A
// rerun on the same ledger asks again and stops again, sending nothing.
func TestFileSentBeforeFromAnotherLedgerStops(t *testing.T) {
	const rows = 80
	rec, client, l, b := sentBeforeFromAnotherLedger(t, rows)
	for run := 1; run <= 2; run++ {
		mark := rec.len()
		e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 4, Timeout: 2 * time.Second,
			ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 10 * time.Second})
		err := e.Send(context.Background(), b)
		var stop *StopError
		if !errors.As(err, &stop) || stop.Reason != StopKnownRefs {
			t.Fatalf("run %d: send: %v, want the known-referenceids stop", run, err)
		}
		if err := e.EnquireAfterStop(context.Background(), b, err); !errors.As(err, &stop) || stop.Reason != StopKnownRefs {
			t.Fatalf("run %d: EnquireAfterStop: %v, want the stop again", run, err)
		}
		asked := 0
		for _, a := range rec.since(mark) {
			switch a.path {
			case aop.PathRecharge:
				t.Errorf("run %d: Recharge for %s: a file sent before must stop before its first send", run, a.ref)
			case aop.PathStatus:
				asked++
			}
		}
		if want := DefaultConfig().KnownRefsWindow; asked != want {
			t.Errorf("run %d: %d status enquiries, want one for each of the first %d rows", run, asked, want)
		}
		if n := countState(t, l, b, ledger.StateQueued); n != rows {
			t.Errorf("run %d: %d rows queued, want all %d", run, n, rows)
		}
	}
	// Every request is in the attempts log; the rows asked about stay queued.
	status := 0
	err := l.EachAttempt(context.Background(), b.Seq, func(a *ledger.AttemptRow) error {
		if a.Kind != "status" || a.State != ledger.StateQueued {
			t.Errorf("line %d: attempt %s logged %s, want status enquiries of queued rows only", a.Line, a.Kind, a.State)
		}
		status++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * DefaultConfig().KnownRefsWindow; status != want {
		t.Errorf("%d attempts logged, want the %d enquiries", status, want)
	}
}

// A file sent before only from some line on passes the enquiries about
// its first rows, and stops once the first sends come back 18: the 8th
// of the last 16. The rows answered 18 are asked about before the run
// exits; nothing more is sent.
func TestFileSentBeforeInPartStopsOnItsFirstSends(t *testing.T) {
	const rows, workers = 80, 4
	rec, client, l, b := sentBeforeFromAnotherLedger(t, rows)
	// Enquiries that say nothing (503) stand for a first part the provider
	// never saw.
	var blind atomic.Bool
	blind.Store(true)
	h := rec.h
	rec.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blind.Load() && r.URL.Path == aop.PathStatus {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
	mark := rec.len()
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: workers, Timeout: 2 * time.Second,
		ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 10 * time.Second})
	err := e.Send(context.Background(), b)
	var stop *StopError
	if !errors.As(err, &stop) || stop.Reason != StopKnownRefs || !strings.Contains(stop.Detail, "answered 18") {
		t.Fatalf("send: %v, want the known-referenceids stop on the answers 18", err)
	}
	recharges := 0
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			recharges++
		}
	}
	// The other workers' rows were on their way.
	if limit := DefaultConfig().KnownRefsWindow + workers; recharges < 8 || recharges > limit {
		t.Errorf("%d Recharges reached the provider from the second ledger, want 8 to %d of the file's %d", recharges, limit, rows)
	}
	if n := countState(t, l, b, ledger.StateQueued); n != int64(rows-recharges) {
		t.Errorf("%d rows left queued, want the %d never sent", n, rows-recharges)
	}
	blind.Store(false)
	mark = rec.len()
	if err := e.EnquireAfterStop(context.Background(), b, err); !errors.As(err, &stop) || stop.Reason != StopKnownRefs {
		t.Fatalf("EnquireAfterStop: %v, want the stop again", err)
	}
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			t.Errorf("Recharge for %s after the stop", a.ref)
		}
	}
	if n := countState(t, l, b, ledger.StateDuplicate); n != 0 {
		t.Errorf("%d rows still duplicate after the enquiries: the provider's record of each says what it is", n)
	}
}

// A small file sent before stops too: its rows that failed without the
// provider keeping them are never found, so half of those asked is enough.
func TestSmallFileSentBeforeStops(t *testing.T) {
	const rows = 6
	rec, client, l, b := sentBeforeFromAnotherLedger(t, rows)
	mark := rec.len()
	err := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 4, Timeout: 2 * time.Second}).Send(context.Background(), b)
	var stop *StopError
	if !errors.As(err, &stop) || stop.Reason != StopKnownRefs {
		t.Fatalf("send: %v, want the known-referenceids stop", err)
	}
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			t.Errorf("Recharge for %s", a.ref)
		}
	}
}

// Only a row never sent and never answered goes for the first time.
func TestFirstSendIsOfRowsNeverSentNorAnswered(t *testing.T) {
	for _, tc := range []struct {
		row  ledger.Row
		want bool
	}{
		{ledger.Row{State: ledger.StateQueued, ResponseCode: -1}, true},
		{ledger.Row{State: ledger.StateQueued, ResponseCode: 16}, false},               // declined for the account, queued again
		{ledger.Row{State: ledger.StateQueued, ResponseCode: -1, Attempts: 1}, false},  // held after it was sent, queued again
		{ledger.Row{State: ledger.StateUnknown, ResponseCode: -1, Attempts: 1}, false}, // sent again after an enquiry
	} {
		if got := firstSend(tc.row); got != tc.want {
			t.Errorf("firstSend(%s, code %d, %d sends) = %v, want %v", tc.row.State, tc.row.ResponseCode, tc.row.Attempts, got, tc.want)
		}
	}
}

// --allow-known-refs sends such a file whole: a ledger that was lost.
func TestAllowKnownRefsSendsAFileSentBefore(t *testing.T) {
	const rows = 40
	rec, client, l, b := sentBeforeFromAnotherLedger(t, rows)
	mark := rec.len()
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 4, Timeout: 2 * time.Second, AllowKnownRefs: true,
		ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 10 * time.Second})
	if err := e.Send(context.Background(), b); err != nil {
		t.Fatalf("send: %v", err)
	}
	recharges := 0
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			recharges++
		}
	}
	if recharges != rows {
		t.Errorf("%d Recharges, want every one of the %d rows", recharges, rows)
	}
}

// A few referenceids the provider already holds (rows paid by hand before
// the file ran, say) are not a file sent before: each is asked about, and
// the run goes on.
func TestAFewKnownReferenceidsDoNotStopTheRun(t *testing.T) {
	sb := aoptest.New(aoptest.DefaultConfig())
	rec := &recorder{h: sb}
	first := openLedger(t)
	// The first 7 rows of the file, sent alone: 7 of the first 16 of the
	// file answer 18, one short of the stop.
	c1, b1 := servedBatchIn(t, rec, first, 7)
	if err := New(first, c1, Config{Owner: ledger.NewOwner("test"), Workers: 2}).Send(context.Background(), b1); err != nil {
		t.Fatal(err)
	}
	client, l, b := servedBatch(t, rec, 60)
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 4, Timeout: 2 * time.Second,
		ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: 10 * time.Second})
	if err := e.Send(context.Background(), b); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := e.Resolve(context.Background(), b); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if n := countState(t, l, b, ledger.StateSuccess); n != 60 {
		t.Errorf("%d rows success, want all 60 (the 7 known ones confirmed by enquiry)", n)
	}
}

// sentBeforeFromAnotherLedger sends a file of n rows from one ledger,
// against a sandbox that fails a quarter of recharges without keeping
// their referenceid (14), then records the same file in a second, new
// ledger: the recorder, a client of the same sandbox, the second ledger
// and its batch.
func sentBeforeFromAnotherLedger(t *testing.T, n int) (*recorder, *aop.Client, ledger.Store, ledger.Batch) {
	t.Helper()
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 3
	cfg.FailRate = 0.25
	rec := &recorder{h: aoptest.New(cfg)}
	first := openLedger(t)
	c1, b1 := servedBatchIn(t, rec, first, n)
	if err := New(first, c1, Config{Owner: ledger.NewOwner("test"), Workers: 4}).Send(context.Background(), b1); err != nil {
		t.Fatal(err)
	}
	if f := countState(t, first, b1, ledger.StateFailed); f == 0 {
		t.Fatal("setup: no row failed in the first ledger; the sandbox's --fail-rate did not apply")
	}
	client, l, b := servedBatch(t, rec, n)
	return rec, client, l, b
}
