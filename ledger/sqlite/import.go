package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/proc"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// batchImport copies one batch in from another ledger. The batch exists,
// not ready, under a lease of the import's own from the start, so no run
// sends or clears it half copied; each call is one transaction.
type batchImport struct {
	l     *Store
	b     ledger.Batch
	seq   int64
	owner ledger.Owner
	rows  int64
	done  bool
	// replacing: the batch was left not ready by a copy cut short, and is
	// written again over its rows (takeCutShort).
	replacing bool
	// attemptsGone: the attempts the cut-short copy brought were deleted,
	// with the first attempts of this one (or at Finish, when it has
	// none): until then they stay beside the rows they explain.
	attemptsGone bool
}

// dropAttempts deletes, inside tx, the attempts a cut-short copy left,
// once, when this copy is replacing it.
func (im *batchImport) dropAttempts(ctx context.Context, tx *sql.Tx) error {
	if !im.replacing || im.attemptsGone {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM attempts WHERE batch = ?`, im.seq)
	return err
}

// importLease is how long an import's lease lasts: it is renewed by every
// call, and a copy that dies leaves a batch the next copy of it replaces.
const importLease = 10 * 60 * 1000 // ms

// ImportBatch implements ledger.Store.
func (l *Store) ImportBatch(ctx context.Context, b ledger.Batch) (ledger.BatchImport, error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	o := ledger.NewOwner("import-" + hex.EncodeToString(id))
	header := sqlrow.Header(b.Header)
	now := l.nowMS()
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	defer tx.Rollback()
	seq, replacing, err := takeCutShort(ctx, tx, b, o, now)
	if err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	if !replacing {
		res, err := tx.ExecContext(ctx, `INSERT INTO batches (id, content_hash, source, header, status, created_ms, lease_owner, lease_host, lease_pid, lease_expires_ms, archived)
			VALUES (?, ?, ?, ?, 'ingesting', ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			b.ID, b.ContentHash, b.Source, header, b.Created.UnixMilli(), o.ID, o.Host, o.PID, now+importLease, b.Archived)
		if err != nil {
			return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil, fmt.Errorf("import batch %s: %w", b.ID, ledger.ErrBatchExists)
		}
		if seq, err = res.LastInsertId(); err != nil {
			return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	return &batchImport{l: l, b: b, seq: seq, owner: o, replacing: replacing}, nil
}

// takeCutShort takes over, inside tx, a batch b.ID never made ready (an
// earlier copy of the same batch cut short, or a recording of its file
// abandoned) whose holder is gone, for the copy to write again: each of
// its rows is replaced as the copy brings the same line (Rows), in one
// transaction, so that its referenceid is held throughout, and its
// attempts give way to the copy's with the first of them (dropAttempts).
// Nothing of a batch not ready was sent from this ledger (no run sends
// it, and a run of its file refuses to record over rows a copy brought),
// and ledger.Copy has checked that the source holds every row of it that
// was sent. A ready batch, a different file's, or one still being written
// is left, and the insert that follows refuses the id.
func takeCutShort(ctx context.Context, tx *sql.Tx, b ledger.Batch, o ledger.Owner, now int64) (int64, bool, error) {
	var (
		seq          int64
		status, hash string
		owner, host  sql.NullString
		pid, expires sql.NullInt64
	)
	err := tx.QueryRowContext(ctx, `SELECT seq, status, content_hash, lease_owner, lease_host, lease_pid, lease_expires_ms
		FROM batches WHERE id = ?`, b.ID).Scan(&seq, &status, &hash, &owner, &host, &pid, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if status == "ready" || hash != b.ContentHash ||
		owner.Valid && expires.Int64 > now && proc.Alive(host.String, int(pid.Int64), o.Host) {
		return 0, false, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM dispatches WHERE batch = ?`, seq); err != nil {
		return 0, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE batches SET source = ?, header = ?, created_ms = ?, archived = ?, rows_total = 0,
			lease_owner = ?, lease_host = ?, lease_pid = ?, lease_expires_ms = ? WHERE seq = ?`,
		b.Source, sqlrow.Header(b.Header), b.Created.UnixMilli(), b.Archived, o.ID, o.Host, o.PID, now+importLease, seq); err != nil {
		return 0, false, err
	}
	return seq, true, nil
}

// Rows implements ledger.BatchImport.
func (im *batchImport) Rows(ctx context.Context, rows []ledger.Row) error {
	tx, err := im.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO rows (batch, line, referenceid, operator, canumber, amount_paise, request, raw,
		state, response_code, message, error_code, error_column, attempts, provider_txnid, first_sent_ms, updated_ms, retry_of)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	defer st.Close()
	for _, r := range rows {
		if r.State == ledger.StateInflight {
			return fmt.Errorf("import batch %s line %d: a row in flight is not copied: settle the batch first", im.b.ID, r.Line)
		}
		if im.replacing {
			// The line as the cut-short copy left it gives way to the
			// line as it is now, in this transaction: its referenceid is
			// never free.
			if _, err := tx.ExecContext(ctx, `DELETE FROM rows WHERE batch = ? AND line = ?`, im.seq, r.Line); err != nil {
				return fmt.Errorf("import batch %s line %d: %w", im.b.ID, r.Line, err)
			}
		}
		var raw any
		if r.Raw != nil {
			js, _ := json.Marshal(r.Raw)
			raw = string(js)
		}
		var first any
		if !r.FirstSent.IsZero() {
			first = r.FirstSent.UnixMilli()
		}
		if _, err := st.ExecContext(ctx, im.seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise, r.StoredRequest(), raw,
			string(r.State), nullCode(r.ResponseCode), r.Message, r.ErrorCode, r.ErrorColumn, r.Attempts, r.ProviderTxnID,
			first, r.Updated.UnixMilli(), nullString(r.RetryOf)); err != nil {
			if strings.Contains(err.Error(), "UNIQUE") && strings.Contains(err.Error(), "referenceid") {
				return fmt.Errorf("import batch %s line %d: referenceid %s is already in this ledger under another batch", im.b.ID, r.Line, r.ReferenceID)
			}
			if strings.Contains(err.Error(), "UNIQUE") && strings.Contains(err.Error(), "retry_of") {
				return fmt.Errorf("import batch %s line %d: the row it retries, %s, is already retried in this ledger by another batch", im.b.ID, r.Line, r.RetryOf)
			}
			return fmt.Errorf("import batch %s line %d: %w", im.b.ID, r.Line, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	im.rows += int64(len(rows))
	return nil
}

// Attempts implements ledger.BatchImport.
func (im *batchImport) Attempts(ctx context.Context, as []ledger.AttemptRow) error {
	tx, err := im.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := im.dropAttempts(ctx, tx); err != nil {
		return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO attempts (batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message, process)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	defer st.Close()
	// A batch's attempts name a few processes: each is looked up once.
	ids := map[ledger.Process]any{}
	for _, a := range as {
		id, ok := ids[a.Process]
		if !ok {
			if id, err = processID(ctx, tx, a.Process); err != nil {
				return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
			}
			ids[a.Process] = id
		}
		if _, err := st.ExecContext(ctx, im.seq, a.Line, a.Kind, a.At.UnixMilli(), a.Latency.Milliseconds(), a.HTTPStatus,
			nullCode(a.Code), a.Class, string(a.State), a.Message, id); err != nil {
			return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	im.attemptsGone = im.replacing
	return nil
}

// begin starts a transaction under the import's lease, renewing it.
func (im *batchImport) begin(ctx context.Context) (*sql.Tx, error) {
	if im.done {
		return nil, fmt.Errorf("import batch %s: already finished", im.b.ID)
	}
	tx, err := im.l.beginHolding(ctx, im.seq, im.owner)
	if err != nil {
		return nil, fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE batches SET lease_expires_ms = ? WHERE seq = ?`, im.l.nowMS()+importLease, im.seq); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	return tx, nil
}

// Finish implements ledger.BatchImport.
func (im *batchImport) Finish(ctx context.Context) error {
	tx, err := im.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := im.dropAttempts(ctx, tx); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	status := "ingesting"
	if im.b.Ready {
		status = "ready"
	}
	if _, err := tx.ExecContext(ctx, `UPDATE batches SET status = ?, rows_total = ?, lease_owner = NULL, lease_host = NULL,
		lease_pid = NULL, lease_expires_ms = NULL WHERE seq = ?`, status, im.b.RowsTotal, im.seq); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	im.done = true
	return nil
}

// Abort implements ledger.BatchImport.
func (im *batchImport) Abort(ctx context.Context) error {
	if im.done {
		return nil
	}
	im.done = true
	if im.replacing {
		// Its rows held their referenceids before this copy began, some
		// of them paid: left as they are, not ready, for a copy again.
		return im.l.Release(ctx, im.b.ID, im.owner)
	}
	err := im.l.DeleteBatch(ctx, im.seq, im.owner)
	if errors.Is(err, ledger.ErrLeaseLost) {
		return nil // someone took it over: it is theirs to clear
	}
	return err
}

// nullString stores "" as NULL.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
