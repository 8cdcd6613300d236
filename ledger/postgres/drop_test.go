package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
)

// TestDropKeepsRowsClaimedWhileItChecks: on a shared ledger, ledger drop
// joins a batch beside the processes running it (Acquire never refuses
// there). A process that claims rows after DropUnsent read that nothing
// was sent, and before it deleted the rows, has them in flight, about to
// be sent: DropUnsent must refuse, not delete them and free their
// referenceids. Another process's lock on the batch's row (a process
// joining it holds one) makes the moment last.
func TestDropKeepsRowsClaimedWhileItChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Start(t)
	url := srv.URL(srv.NewDB(t))
	s := openStore(t, url, Options{})
	runner := ledger.NewOwner("runner")
	b := recorded(t, s, "B", runner, time.Minute, sendable(2, "R-1"), sendable(3, "R-2"))
	dropper := ledger.NewOwner("dropper")
	if _, err := s.Acquire(ctx, ledger.NewBatch{ID: "B"}, dropper, time.Minute); err != nil {
		t.Fatal(err)
	}
	w, err := s.NewWriter(ctx, b.Seq, runner)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM batches WHERE seq = $1 FOR SHARE`, b.Seq); err != nil {
		t.Fatal(err)
	}
	dropped := make(chan error, 1)
	go func() { dropped <- s.DropUnsent(ctx, b.Seq, dropper) }()
	// Until the drop waits on the batch's row, its check begun.
	for waiting := 0; waiting == 0; {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-dropped:
			t.Fatalf("DropUnsent ended before it waited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	claimed, err := w.(ledger.Claimer).Claim(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 2 {
		t.Fatalf("claimed %d rows, want 2", len(claimed))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The runner now sends.
	if err := <-dropped; !errors.Is(err, ledger.ErrBatchSent) {
		t.Errorf("DropUnsent of a batch whose rows were claimed to be sent = %v, want ErrBatchSent", err)
	}
	holders, err := s.RefHolders(ctx, []string{"R-1", "R-2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != 2 {
		t.Errorf("referenceids of rows in flight still held: %v, want both: freed, a file reusing them sends them again", holders)
	}
}
