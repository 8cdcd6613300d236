package postgres

import (
	"context"
	"fmt"
	"maps"

	"github.com/aopbatch/aopbatch/ledger"
)

// Archive implements ledger.Store.
func (s *Store) Archive(ctx context.Context, seq int64, o ledger.Owner, archive string, want ledger.Counts) error {
	if archive == "" {
		return fmt.Errorf("archive batch %d: no archive named", seq)
	}
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	defer tx.Rollback(ctx)
	// The batch row locked: a process that would join (Acquire) or correct
	// a row (Correct) waits, and then finds it archived. One already at
	// the batch must be done first.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM batches WHERE seq = $1 FOR UPDATE`, seq); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	var others int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE batch = $1 AND owner <> $2 AND expires_ms >= $3`,
		seq, o.ID, s.nowMS()).Scan(&others); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if others > 0 {
		return fmt.Errorf("archive batch %d: %d other process(es) at it: %w", seq, others, ledger.ErrBatchLocked)
	}
	var open int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM rows WHERE batch = $1 AND state IN
		('queued', 'inflight', 'pending', 'duplicate', 'unknown', 'held')`, seq).Scan(&open); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if open > 0 {
		return fmt.Errorf("archive batch %d: %w", seq, ledger.ErrNotFinal)
	}
	got := ledger.Counts{}
	rs, err := tx.Query(ctx, `SELECT state, count(*), coalesce(sum(amount_paise), 0)::bigint FROM rows WHERE batch = $1 GROUP BY state`, seq)
	if err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	for rs.Next() {
		var st string
		var t ledger.Tally
		if err := rs.Scan(&st, &t.Rows, &t.Paise); err != nil {
			rs.Close()
			return fmt.Errorf("archive batch %d: %w", seq, err)
		}
		got[ledger.State(st)] = t
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("archive batch %d: %w", seq, err)
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("archive batch %d: %v here, %v in the archive: %w", seq, got, want, ledger.ErrChanged)
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
