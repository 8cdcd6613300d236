package postgres

import (
	"context"
	"fmt"

	"github.com/aopbatch/aopbatch/ledger"
)

// Archive implements ledger.Store.
func (s *Store) Archive(ctx context.Context, seq int64, o ledger.Owner, archive string) error {
	if archive == "" {
		return fmt.Errorf("archive batch %d: no archive named", seq)
	}
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	defer tx.Rollback(ctx)
	var open int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM rows WHERE batch = $1 AND state IN
		('queued', 'inflight', 'pending', 'duplicate', 'unknown', 'held')`, seq).Scan(&open); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if open > 0 {
		return fmt.Errorf("archive batch %d: %w", seq, ledger.ErrNotFinal)
	}
	// An empty body keeps a sent row in the referenceid index (it covers
	// the rows with a body): the referenceid stays held.
	for _, q := range []string{
		`DELETE FROM attempts WHERE batch = $1`,
		`UPDATE rows SET request = CASE WHEN request IS NULL THEN NULL ELSE '\x'::bytea END, raw = NULL, message = '' WHERE batch = $1`,
	} {
		if _, err := tx.Exec(ctx, q, seq); err != nil {
			return fmt.Errorf("archive batch %d: %w", seq, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE batches SET archived = $2 WHERE seq = $1`, seq, archive); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	return nil
}
