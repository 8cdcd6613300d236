package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"maps"

	"github.com/aopbatch/aopbatch/ledger"
)

// Archive implements ledger.Store.
func (l *Store) Archive(ctx context.Context, seq int64, o ledger.Owner, archive string, want ledger.Counts) error {
	if archive == "" {
		return fmt.Errorf("archive batch %d: no archive named", seq)
	}
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	defer tx.Rollback()
	var open int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM rows WHERE batch = ?1 AND state IN
		('queued', 'inflight', 'pending', 'duplicate', 'unknown', 'held')`, seq).Scan(&open); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if open == 0 {
		// Rows in a dispatch read as inflight, whatever the table says.
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM dispatches WHERE batch = ?`, seq).Scan(&open); err != nil {
			return fmt.Errorf("archive batch %d: %w", seq, err)
		}
	}
	if open > 0 {
		return fmt.Errorf("archive batch %d: %w", seq, ledger.ErrNotFinal)
	}
	// Under the write lock nothing moves: the batch is as the archive has it.
	got, err := countsIn(ctx, tx, seq)
	if err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("archive batch %d: %v here, %v in the archive: %w", seq, got, want, ledger.ErrChanged)
	}
	// An empty body keeps a sent row in the referenceid index (it covers
	// the rows with a body): the referenceid stays held.
	for _, q := range []string{
		`DELETE FROM attempts WHERE batch = ?1`,
		`UPDATE rows SET request = CASE WHEN request IS NULL THEN NULL ELSE x'' END, raw = NULL, message = ''
			WHERE batch = ?1`,
		`UPDATE batches SET archived = ?2 WHERE seq = ?1`,
	} {
		if _, err := tx.ExecContext(ctx, q, seq, archive); err != nil {
			return fmt.Errorf("archive batch %d: %w", seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	return nil
}

// Vacuum gives the space of archived batches back to the file system.
func (l *Store) Vacuum(ctx context.Context) error {
	if _, err := l.w.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("vacuum %s: %w", l.path, err)
	}
	return nil
}

// countsIn tallies batch seq by state as stored, through q (a
// transaction, or the readers): no dispatch is folded in.
func countsIn(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, seq int64) (ledger.Counts, error) {
	rs, err := q.QueryContext(ctx, `SELECT state, count(*), coalesce(sum(amount_paise), 0) FROM rows WHERE batch = ? GROUP BY state`, seq)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	c := ledger.Counts{}
	for rs.Next() {
		var s string
		var t ledger.Tally
		if err := rs.Scan(&s, &t.Rows, &t.Paise); err != nil {
			return nil, err
		}
		c[ledger.State(s)] = t
	}
	return c, rs.Err()
}
