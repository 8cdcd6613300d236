package batch

import (
	"context"
	"os"
	"testing"
	"time"

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
	srv := pgtest.Start(t)
	s, err := postgres.Open(ctx, srv.URL(srv.NewDB(t)), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fail := func(err error) { t.Errorf("budget: %v", err) }
	const rate = 100 // block of 5 slots, 10 ms apart
	start := time.Now()
	busy := newSharedSlots(s, "acct", rate, 1, fail)
	quiet := newSharedSlots(s, "acct", rate, 1, fail)

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
