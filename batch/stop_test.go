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

// After the wallet runs dry the run sends nothing more, but still asks
// about the rows already at the provider: the pending ones are settled
// before it exits, and an unknown row the provider never recorded is asked
// about once and left unknown, never sent again (the wallet stop forbids
// it; the next run sends it).
func TestWalletStopStillAsksAboutUnsettledRows(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 7
	cfg.WalletPaise = 400_00 // the file's first 20 or so rows
	cfg.PendingRate = 0.4
	cfg.PendingDelay = 200 * time.Millisecond
	cfg.Fault5xxRate = 0.15 // unknown, and not recorded: a resend would be allowed but for the stop
	rec := &recorder{h: aoptest.New(cfg)}
	client, l, b := servedBatch(t, rec, 60)
	ctx := context.Background()
	e, sent := stoppedByTheWallet(t, l, client, b, 50*time.Millisecond, 10*time.Second)
	var stop *StopError
	pendingAtStop := countState(t, l, b, ledger.StatePending)
	unknownAtStop := countState(t, l, b, ledger.StateUnknown)
	if pendingAtStop == 0 || unknownAtStop == 0 {
		t.Fatalf("setup: %d pending and %d unknown rows at the stop, want some of each", pendingAtStop, unknownAtStop)
	}
	mark := rec.len()

	err := e.EnquireAfterStop(ctx, b, sent)
	if !errors.As(err, &stop) || stop.Reason != StopAccount {
		t.Fatalf("EnquireAfterStop: %v, want the wallet's stop again", err)
	}
	enquiries := map[string]int{}
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			t.Errorf("Recharge for %s after the wallet's stop", a.ref)
		}
		enquiries[a.ref]++
	}
	if n := countState(t, l, b, ledger.StatePending); n != 0 {
		t.Errorf("%d rows still pending after the enquiries (%d at the stop)", n, pendingAtStop)
	}
	if n := countState(t, l, b, ledger.StateUnknown); n != unknownAtStop {
		t.Errorf("%d rows unknown after the enquiries, want the %d the provider never recorded", n, unknownAtStop)
	}
	unknown, err := l.Page(ctx, b.Seq, ledger.StateUnknown, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range unknown {
		if got := enquiries[r.ReferenceID]; got != 1 {
			t.Errorf("line %d (unknown, no record) asked about %d times, want once", r.Line, got)
		}
	}
}

// A row a killed run left in flight keeps, through the enquiries after a
// wallet stop, what keeps the next run from sending it again within
// --timeout of its first send: its request may still reach the provider.
// (A money-safety review's case: the pass used to overwrite its message.)
func TestWalletStopKeepsADeadRunsRowFromAnEarlyResend(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.WalletPaise = 0 // every Recharge answered 16
	sb := aoptest.New(cfg)
	rec := &recorder{h: sb}
	client, l, b := servedBatch(t, rec, 6)
	ctx := context.Background()
	// The killed run (the one that recorded the file): two rows marked in
	// flight, never sent.
	dead := ingestOpts(NoControls()).Owner
	w, err := l.NewWriter(ctx, b.Seq, dead)
	if err != nil {
		t.Fatal(err)
	}
	page, err := l.Queued(ctx, b.Seq, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range page[:2] {
		if err := w.MarkInflight(ctx, r.Line, r.Attempts); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := func(name string) Config {
		if err := l.Release(ctx, b.ID, dead); err != nil {
			t.Fatal(err)
		}
		dead = ledger.NewOwner(name)
		if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, dead, time.Minute); err != nil {
			t.Fatal(err)
		}
		return Config{Owner: dead, Workers: 1, Timeout: time.Minute, ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: time.Second}
	}
	e := New(l, client, next("stopped"))
	if err := e.Prepare(ctx, b); err != nil {
		t.Fatal(err)
	}
	sent := sendToWalletStop(t, e, b)
	var stop *StopError
	if err := e.EnquireAfterStop(ctx, b, sent); !errors.As(err, &stop) || stop.Reason != StopAccount {
		t.Fatalf("EnquireAfterStop: %v, want the wallet's stop", err)
	}
	for _, r := range page[:2] {
		got, err := l.Row(ctx, b.Seq, r.Line)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != ledger.StateUnknown || got.Message != ledger.RecoveredMessage {
			t.Errorf("line %d after the pass: %s %q, want unknown %q", r.Line, got.State, got.Message, ledger.RecoveredMessage)
		}
	}
	// The wallet topped up, a rerun within --timeout of the dead run's
	// requests asks about those rows and does not send them.
	sb.TopUp(1_000_000)
	mark := rec.len()
	if err := New(l, client, next("rerun")).Resolve(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, a := range rec.since(mark) {
		if a.path == aop.PathRecharge {
			t.Errorf("Recharge for %s within --timeout of a dead run's request", a.ref)
		}
	}
}

// refuseEnquiries answers every status enquiry 401 once refuse is set.
type refuseEnquiries struct {
	h      http.Handler
	refuse atomic.Bool
}

func (r *refuseEnquiries) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.refuse.Load() && req.URL.Path == aop.PathStatus {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"status":false,"response_code":10,"message":"Authentication failed"}`))
		return
	}
	r.h.ServeHTTP(w, req)
}

// A stop met while asking after the wallet's stop (here the credential
// refused) ends the enquiries at once, and the run reports it first,
// keeping the wallet's.
func TestStopDuringTheEnquiriesAfterAStopEndsThem(t *testing.T) {
	cfg := pendingUntilTheWalletStops()
	h := &refuseEnquiries{h: aoptest.New(cfg)}
	rec := &recorder{h: h}
	client, l, b := servedBatch(t, rec, 60)
	ctx := context.Background()
	e, sent := stoppedByTheWallet(t, l, client, b, 20*time.Millisecond, 20*time.Second)
	var stop *StopError
	h.refuse.Store(true)
	mark := rec.len()
	began := time.Now()
	err := e.EnquireAfterStop(ctx, b, sent)
	if !errors.As(err, &stop) || stop.Reason != StopAuth || stop.Before == nil || stop.Before.Reason != StopAccount {
		t.Fatalf("EnquireAfterStop: %v, want the credential's stop, the wallet's kept", err)
	}
	if msg := stop.Error(); !strings.HasPrefix(msg, "stopped asking the provider: ") ||
		!strings.Contains(msg, `16 "Insufficient funds`) || !strings.Contains(msg, "top up the wallet") {
		t.Errorf("the message %q does not give both stops, the wallet's detail and hint", msg)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the enquiries went on %s after the credential was refused", took.Round(time.Millisecond))
	}
	if n := len(rec.since(mark)); n > 4 {
		t.Errorf("%d requests after the credential was refused, want the pass ended at once", n)
	}
}

// failingPages is a real ledger whose Page fails once fail is set: a
// ledger that cannot be read while the enquiries after a stop page through
// the unsettled rows.
type failingPages struct {
	ledger.Store
	fail atomic.Bool
}

func (f *failingPages) Page(ctx context.Context, seq int64, s ledger.State, after, limit int) ([]ledger.Row, error) {
	if f.fail.Load() {
		return nil, errors.New("disk I/O error")
	}
	return f.Store.Page(ctx, seq, s, after, limit)
}

// A ledger error met while asking after the wallet's stop is reported
// with it, not dropped.
func TestLedgerErrorDuringTheEnquiriesAfterAStopIsReported(t *testing.T) {
	cfg := pendingUntilTheWalletStops()
	client, real, b := sandboxBatch(t, cfg, 60)
	l := &failingPages{Store: real}
	ctx := context.Background()
	e, sent := stoppedByTheWallet(t, l, client, b, 20*time.Millisecond, 5*time.Second)
	var stop *StopError
	l.fail.Store(true)
	err := e.EnquireAfterStop(ctx, b, sent)
	if !errors.As(err, &stop) || stop.Reason != StopAccount || !strings.Contains(err.Error(), "disk I/O error") {
		t.Fatalf("EnquireAfterStop: %v, want the wallet's stop and the ledger's error", err)
	}
}

// stoppedByTheWallet makes an engine over l and client (one worker,
// enquiry rounds every backoff for up to limit) and sends b with it until
// the wallet's stop: the engine, and the error Send ended with.
func stoppedByTheWallet(t *testing.T, l ledger.Store, client Provider, b ledger.Batch, backoff, limit time.Duration) (*Engine, error) {
	t.Helper()
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 1, Timeout: 2 * time.Second,
		ResolveBackoff: backoff, ResolveTimeout: limit})
	return e, sendToWalletStop(t, e, b)
}

// sendToWalletStop sends b with e and returns the error Send ended with,
// which must be the wallet's stop.
func sendToWalletStop(t *testing.T, e *Engine, b ledger.Batch) error {
	t.Helper()
	err := e.Send(context.Background(), b)
	if stop := (*StopError)(nil); !errors.As(err, &stop) || stop.Reason != StopAccount {
		t.Fatalf("send: %v, want the wallet's stop", err)
	}
	return err
}

// pendingUntilTheWalletStops is a sandbox whose wallet pays the first 20
// or so rows, every one of them pending for the rest of the test.
func pendingUntilTheWalletStops() aoptest.Config {
	cfg := aoptest.DefaultConfig()
	cfg.WalletPaise = 400_00
	cfg.PendingRate = 1
	cfg.PendingDelay = time.Hour
	return cfg
}

func countState(t *testing.T, l ledger.Store, b ledger.Batch, s ledger.State) int64 {
	t.Helper()
	n, err := l.CountState(context.Background(), b.Seq, s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAfterStopOutlivesTheStopByItsGrace: what a stopped run must still do
// (record, report) goes on after the stop, but not for ever: a ledger that
// stalls then would keep a cron job alive, waiting for a second signal.
func TestAfterStopOutlivesTheStopByItsGrace(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	bctx, cancel := afterStop(ctx, 200*time.Millisecond)
	defer cancel()
	time.Sleep(300 * time.Millisecond)
	if bctx.Err() != nil {
		t.Fatal("ended before any stop")
	}
	stop()
	if bctx.Err() != nil {
		t.Fatal("ended at the stop: the stopped run's record and reports would be cut short")
	}
	select {
	case <-bctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("still going 10 s after a stop with 200 ms of grace")
	}
}

// TestResolveStopsHandingOutRowsAtItsTimeout: --resolve-timeout bounds the
// enquiries, not only the pauses between rounds. A round hands out no row
// after it, or after one --timeout from its start (those out finish): one
// round of 40 pending rows, one at a time at 100 ms an answer, is 4 s;
// both timeouts are 1 s. (A liveness review:
// 300 rows at --rate 20 took 15 s past a 2 s --resolve-timeout; 50,000 at
// 10/s would take 83 minutes.)
func TestResolveStopsHandingOutRowsAtItsTimeout(t *testing.T) {
	cfg := aoptest.DefaultConfig()
	cfg.PendingRate, cfg.PendingDelay = 1, time.Hour
	sb := aoptest.New(cfg)
	var enquiries atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == aop.PathStatus {
			enquiries.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
		sb.ServeHTTP(w, r)
	})
	const rows = 40
	client, l, b := servedBatch(t, h, rows)
	ctx := context.Background()
	owner := ingestOpts(NoControls()).Owner
	send := New(l, client, Config{Owner: owner, Workers: 8, Timeout: 5 * time.Second})
	if err := send.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	enquiries.Store(0)
	e := New(l, client, Config{Owner: owner, Workers: 1, Timeout: time.Second, ResolveBackoff: 20 * time.Millisecond, ResolveTimeout: time.Second})
	if err := e.Resolve(ctx, b); err != nil {
		t.Fatal(err)
	}
	if n := enquiries.Load(); n == 0 || n >= rows/2 {
		t.Errorf("%d enquiries of %d pending rows in a resolve of 1 s at 100 ms each: want a few, then none handed out past the timeout", n, rows)
	}
}

// Another process taking the batch over while the run asks about its
// rows after the wallet's stop ends the enquiries, and the stop the run
// returns still says it was taken over (StopError.TakenOver somewhere in
// its Before chain): the JSON summary's taken_over and the metrics file's
// aopbatch_run_taken_over are read from it.
func TestTakeoverDuringTheEnquiriesAfterAStopIsSaid(t *testing.T) {
	cfg := pendingUntilTheWalletStops()
	h := &refuseEnquiries{h: aoptest.New(cfg)}
	client, l, b := servedBatch(t, h, 60)
	ctx := context.Background()
	e, sent := stoppedByTheWallet(t, l, client, b, 20*time.Millisecond, 20*time.Second)
	// The run paused past its lease: another process takes the batch.
	if err := l.Release(ctx, b.ID, ledger.NewOwner("test")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, ledger.NewOwner("other"), time.Minute); err != nil {
		t.Fatal(err)
	}
	err := e.EnquireAfterStop(ctx, b, sent)
	var stop *StopError
	if !errors.As(err, &stop) || stop.Reason != StopLease || stop.Before == nil || stop.Before.Reason != StopAccount {
		t.Fatalf("EnquireAfterStop: %v, want the lease's stop, the wallet's kept", err)
	}
	taken := false
	for s := stop; s != nil; s = s.Before {
		taken = taken || s.TakenOver
	}
	if !taken {
		t.Errorf("EnquireAfterStop: %v: no stop in the chain says the batch was taken over", err)
	}
}
