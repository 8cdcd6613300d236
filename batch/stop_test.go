package batch

import (
	"context"
	"errors"
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
	e := New(l, client, Config{Owner: ledger.NewOwner("test"), Workers: 1, Timeout: 2 * time.Second,
		ResolveBackoff: 50 * time.Millisecond, ResolveTimeout: 10 * time.Second})
	var stop *StopError
	if err := e.Send(ctx, b); !errors.As(err, &stop) || stop.Reason != StopAccount {
		t.Fatalf("send: %v, want the wallet's stop", err)
	}
	pendingAtStop := countState(t, l, b, ledger.StatePending)
	unknownAtStop := countState(t, l, b, ledger.StateUnknown)
	if pendingAtStop == 0 || unknownAtStop == 0 {
		t.Fatalf("setup: %d pending and %d unknown rows at the stop, want some of each", pendingAtStop, unknownAtStop)
	}
	mark := rec.len()

	err := e.EnquireAfterStop(ctx, b)
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

func countState(t *testing.T, l ledger.Store, b ledger.Batch, s ledger.State) int64 {
	t.Helper()
	n, err := l.CountState(context.Background(), b.Seq, s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
