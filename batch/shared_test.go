package batch

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestSharedSlotsKnowWhenTheAccountIsBusy: a process whose share of an
// account's rate is small because others use the rest is not short of
// --rate; one alone on an idle account that sends slowly is.
func TestSharedSlotsKnowWhenTheAccountIsBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	fail := func(err error) { t.Errorf("budget: %v", err) }
	const rate = 100 // block of 5 slots, 10 ms apart
	start := time.Now()
	busy := newSharedSlots(s, "acct", rate, 1, time.Now, fail)
	quiet := newSharedSlots(s, "acct", rate, 1, time.Now, fail)

	// Alone on an idle account, a slow sender finds its slots free.
	if _, err := quiet.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if quiet.bookedSince(start) {
		t.Fatal("a lone process on an idle account reports the account busy")
	}
	// Another process takes the next 200 slots (two seconds of the rate).
	for range 200 {
		if _, err := busy.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The quiet one's next block comes after them.
	for range quiet.block {
		if _, err := quiet.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !quiet.bookedSince(start) {
		t.Error("a process queued behind another's slots does not report the account busy")
	}
}

// TestSharedSlotsGiveUpPassedSlots: slots of a reserved block that passed
// while the process was held up are not handed out late: the other
// processes used the account's rate meanwhile.
func TestSharedSlotsGiveUpPassedSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	fail := func(err error) { t.Errorf("budget: %v", err) }
	slots := newSharedSlots(s, "acct", 100, 1, time.Now, fail) // blocks of 5, 10 ms apart
	if _, err := slots.Next(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the rest of the block passes
	at, err := slots.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if late := time.Since(at); late > staleSlot {
		t.Errorf("after a 200 ms pause, a slot %v in the past, want none more than %v", late, staleSlot)
	}
}

// TestJoinWaitsForABusyBatch: a ready batch of a shared ledger is locked
// by each process joining it, and longer by another process's work on it
// (an archive). Joining it then (resolve, reconcile) waits, and joins once
// it is free, rather than fail as if it were still being recorded.
func TestJoinWaitsForABusyBatch(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := Ingest(ctx, s, writeRows(t, 2), ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	// Another process holds the batch's row for 7 s, past lock_timeout.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM batches WHERE seq = $1 FOR UPDATE`, res.Batch.Seq); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(7 * time.Second)
		_ = tx.Rollback(context.Background())
	}()
	defer func() { <-released; conn.Close(ctx) }() // the connection is the releaser's until then
	sess, err := Join(ctx, s, res.Batch, ledger.NewOwner("joining"), time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Join while another process holds the batch for 7 s: %v, want it joined once free", err)
	}
	sess.Close(ctx)
}

// TestUnfoundUnknownRowIsHeldOnASharedLedger: the hold of an unfound
// unknown row whose operator is down (a move guarded by the row's sends,
// ledger.Update.IfSends) works on PostgreSQL as on SQLite.
func TestUnfoundUnknownRowIsHeldOnASharedLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openShared(t)
	join := func(b ledger.Batch, o ledger.Owner) {
		sess, err := Join(ctx, s, b, o, time.Minute, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sess.Close(ctx) })
	}
	testUnfoundUnknownRowIsHeld(t, s, join)
}

// openShared opens a PostgreSQL ledger in a new database of the test
// server, closed when the test ends.
func openShared(t *testing.T) *postgres.Store {
	t.Helper()
	srv := pgtest.Start(t)
	s, err := postgres.Open(context.Background(), srv.URL(srv.NewDB(t)), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
