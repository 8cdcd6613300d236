package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestTakeoverEndsAPausedProcesssTransaction: a process paused inside a
// write (SIGSTOP, a frozen VM) keeps its connection, and so the lock its
// write holds on its session. The takeover of its batch deletes that
// session and would wait on the lock for as long as the process stays
// paused; PostgreSQL must end the idle transaction instead.
func TestTakeoverEndsAPausedProcesssTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	open := func(o Options) *Store {
		s, err := Open(ctx, url, o)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	paused := open(Options{AbandonAfter: time.Second})
	taker := open(Options{})

	var setting string
	if err := taker.pool.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "15s" {
		t.Errorf("idle_in_transaction_session_timeout = %q, want 15s (AbandonTx)", setting)
	}

	a, b := ledger.NewOwner("paused"), ledger.NewOwner("taker")
	batch, err := paused.Acquire(ctx, ledger.NewBatch{ID: "paused", ContentHash: "h"}, a, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, err := paused.BeginIngest(ctx, batch, a, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.AddMany(ctx, []ledger.IngestRow{{Line: 2, ReferenceID: "r1", Operator: 311, CANumber: "CA",
		AmountPaise: 1000, Request: []byte(`{"referenceid":"r1"}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := taker.Acquire(ctx, ledger.NewBatch{ID: "paused"}, b, time.Minute); err != nil {
		t.Fatal(err)
	}

	// The paused process's write: begun under its lease, never finished.
	tx, err := paused.beginHolding(ctx, batch.Seq, a)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	time.Sleep(1100 * time.Millisecond) // its lease runs out

	// Far longer than AbandonAfter, far shorter than forever.
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := taker.RecoverInflight(tctx, batch.Seq, b); err != nil {
		t.Fatalf("takeover of a paused process's batch: %v (it waited on the paused write's lock)", err)
	}
	var sessions int
	if err := taker.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE batch = $1 AND owner = $2`, batch.Seq, a.ID).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Errorf("the paused process still has %d session(s) after the takeover", sessions)
	}
	// Resumed, the paused process finds its write gone, not committed.
	if err := tx.Commit(ctx); err == nil {
		t.Error("the paused write committed after its batch was taken over")
	}
	if err := paused.Renew(ctx, "paused", a, time.Minute); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Renew after the takeover = %v, want ErrLeaseLost", err)
	}
}
