package batch

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// TestRunOfACopyCutShortKeepsItsPaidRows: a ledger copy killed part way
// leaves the batch not ready, its rows (paid ones among them) under the
// copy's lease. Once that lease is over (its lease ran out; on SQLite, its
// pid is gone), a run of the same file takes the "recording" over: it must
// not clear the paid rows and record the file again as queued, which frees
// their referenceids and sends them again with no status enquiry first.
func TestRunOfACopyCutShortKeepsItsPaidRows(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s, url := openSharedURL(t)
		testRunOfACopyCutShort(t, s, func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, `UPDATE sessions SET expires_ms = 0`); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "l.db")
		s, err := sqlite.Open(context.Background(), path, sqlite.Options{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		testRunOfACopyCutShort(t, s, func() {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`UPDATE batches SET lease_pid = 999999`); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// testRunOfACopyCutShort copies a batch of the file's with one paid row
// into s, kills the copy (killed), and runs the file.
func testRunOfACopyCutShort(t *testing.T, s ledger.Store, killed func()) {
	ctx := context.Background()
	path := writeRows(t, 3) // on lines 2-4
	hash, err := HashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	id := BatchIDFor(hash)
	im, err := s.ImportBatch(ctx, ledger.Batch{ID: id, ContentHash: hash, Source: "rows.csv", Ready: true, Created: time.Now(), RowsTotal: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := im.Rows(ctx, []ledger.Row{{Line: 2, ReferenceID: "R-0", Operator: 1, CANumber: "CA0000000", AmountPaise: 1000,
		Request: []byte(`{"x":1}`), State: ledger.StateSuccess, ResponseCode: 1, Attempts: 1, FirstSent: now, Updated: now}}); err != nil {
		t.Fatal(err)
	}
	killed()

	res, ierr := Ingest(ctx, s, path, ingestOpts(NoControls()))
	b, err := s.Batch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Row(ctx, b.Seq, 2)
	if err != nil {
		t.Fatalf("the paid row of the copy is gone (ingest: %+v, %v): %v", res, ierr, err)
	}
	if r.State != ledger.StateSuccess {
		t.Errorf("the paid row R-0 is %s after a run of its file (ingest: queued %d, %v), want it kept success", r.State, res.Queued, ierr)
	}
	if ierr == nil {
		t.Errorf("a run of the file of a copy cut short recorded it (queued %d), want it refused", res.Queued)
	} else if !errors.Is(ierr, ledger.ErrBatchSent) || !strings.Contains(ierr.Error(), "run the same aopbatch ledger copy again") {
		t.Errorf("refused with %v, want ErrBatchSent and the way out", ierr)
	}
	// The refused run gave its lease back: the copy run again (or another
	// run) may take the batch at once.
	if _, err := s.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: hash}, ledger.NewOwner("next"), time.Minute); err != nil {
		t.Errorf("taking the batch after the refused run: %v, want its lease given back", err)
	}
}
