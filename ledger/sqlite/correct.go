package sqlite

import (
	"context"
	"fmt"

	"github.com/aopbatch/aopbatch/ledger"
)

// Correct implements ledger.Store.
func (l *Store) Correct(ctx context.Context, seq int64, o ledger.Owner, c ledger.Correction) error {
	if !ledger.CanCorrect(c.From, c.To) {
		return fmt.Errorf("correct line %d from %s to %s: %w", c.Line, c.From, c.To, ledger.ErrNotCorrectable)
	}
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	defer tx.Rollback()
	var archived string
	if err := tx.QueryRowContext(ctx, `SELECT archived FROM batches WHERE seq = ?`, seq).Scan(&archived); err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	if archived != "" {
		return fmt.Errorf("correct line %d: batch %d (in %s): %w", c.Line, seq, archived, ledger.ErrBatchArchived)
	}
	now := l.nowMS()
	res, err := tx.ExecContext(ctx, `UPDATE rows SET state = ?1, message = ?2,
			provider_txnid = CASE WHEN ?3 = '' THEN provider_txnid ELSE ?3 END, updated_ms = ?4
		WHERE batch = ?5 AND line = ?6 AND state = ?7 AND request IS NOT NULL`,
		string(c.To), c.Message, c.TxnID, now, seq, c.Line, string(c.From))
	if err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("correct line %d: not %s any more: %w", c.Line, c.From, ledger.ErrTransition)
	}
	a := c.Evidence
	if a.Kind == "" {
		a.Kind = "status"
	}
	at := a.At.UnixMilli()
	if a.At.IsZero() {
		at = now
	}
	process, err := processID(ctx, tx, o.Process())
	if err != nil {
		return fmt.Errorf("correct line %d: log evidence: %w", c.Line, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO attempts
		(batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message, process) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, c.Line, a.Kind, at, a.Latency.Milliseconds(), a.HTTPStatus, nullCode(a.Code), a.Class, string(c.To), a.Message, process); err != nil {
		return fmt.Errorf("correct line %d: log evidence: %w", c.Line, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	return nil
}
