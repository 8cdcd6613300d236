package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/proc"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// Acquire takes the lease on batch nb.ID for owner, creating the batch (not
// yet ready) when it is new. It fails with ErrBatchMismatch when the id is
// known with other content, and ErrBatchLocked while another live process
// holds the lease. A lease whose holder died is taken over at once when the
// holder ran on this host (its pid is gone), otherwise once it expires.
func (l *Store) Acquire(ctx context.Context, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration) (ledger.Batch, error) {
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	defer tx.Rollback()
	now := l.nowMS()
	var (
		contentHash, archived string
		owner, host           sql.NullString
		pid, expires, seq     sql.NullInt64
	)
	err = tx.QueryRowContext(ctx,
		`SELECT seq, content_hash, lease_owner, lease_host, lease_pid, lease_expires_ms, archived FROM batches WHERE id = ?`, nb.ID).
		Scan(&seq, &contentHash, &owner, &host, &pid, &expires, &archived)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		header, _ := json.Marshal(nb.Header)
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO batches (id, content_hash, source, header, status, created_ms, lease_owner, lease_host, lease_pid, lease_expires_ms)
			 VALUES (?, ?, ?, ?, 'ingesting', ?, ?, ?, ?, ?)`,
			nb.ID, nb.ContentHash, nb.Source, string(header), now, o.ID, o.Host, o.PID, now+ttl.Milliseconds()); err != nil {
			return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
		}
	case err != nil:
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	default:
		if archived != "" {
			return ledger.Batch{}, fmt.Errorf("batch %s (in %s): %w", nb.ID, archived, ledger.ErrBatchArchived)
		}
		if nb.ContentHash != "" && contentHash != nb.ContentHash {
			return ledger.Batch{}, fmt.Errorf("batch %s: %w", nb.ID, ledger.ErrBatchMismatch)
		}
		if owner.Valid && owner.String != o.ID && expires.Int64 > now && proc.Alive(host.String, int(pid.Int64), o.Host) {
			return ledger.Batch{}, fmt.Errorf("batch %s (pid %d on %s): %w", nb.ID, pid.Int64, host.String, ledger.ErrBatchLocked)
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE batches SET lease_owner = ?, lease_host = ?, lease_pid = ?, lease_expires_ms = ? WHERE id = ?`,
			o.ID, o.Host, o.PID, now+ttl.Milliseconds(), nb.ID); err != nil {
			return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
		}
	}
	b, err := sqlrow.Batch(tx.QueryRowContext(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches WHERE id = ?`, nb.ID))
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	return b, nil
}

// Renew extends the lease held by o; ErrLeaseLost when another owner took it.
func (l *Store) Renew(ctx context.Context, batch string, o ledger.Owner, ttl time.Duration) error {
	res, err := l.w.ExecContext(ctx,
		`UPDATE batches SET lease_expires_ms = ? WHERE id = ? AND lease_owner = ?`,
		l.nowMS()+ttl.Milliseconds(), batch, o.ID)
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", batch, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("renew lease on %s: %w", batch, ledger.ErrLeaseLost)
	}
	return nil
}

// beginHolding begins a write transaction of o's on batch seq, failing
// with ErrLeaseLost unless o holds the batch's lease. The writer connection
// begins immediate transactions, so no takeover can commit between the
// check and the transaction's writes. A lease that expired without anyone
// taking it over is still o's.
func (l *Store) beginHolding(ctx context.Context, seq int64, o ledger.Owner) (*sql.Tx, error) {
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM batches WHERE seq = ? AND lease_owner = ?`, seq, o.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("batch %d: %w", seq, ledger.ErrLeaseLost)
	}
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return tx, nil
}

// Release gives up o's lease so the next run need not wait for it to expire.
func (l *Store) Release(ctx context.Context, batch string, o ledger.Owner) error {
	_, err := l.w.ExecContext(ctx,
		`UPDATE batches SET lease_owner = NULL, lease_host = NULL, lease_pid = NULL, lease_expires_ms = NULL
		 WHERE id = ? AND lease_owner = ?`, batch, o.ID)
	if err != nil {
		return fmt.Errorf("release lease on %s: %w", batch, err)
	}
	return nil
}

// ClearRows deletes a batch's rows and attempts, keeping the batch (and its
// lease): used when an ingest is abandoned, so a refused or half-read file
// leaves no row behind to be sent or to hold a referenceid. A ready batch is
// refused: its rows are the record of what was sent. Only o, the lease
// holder, may: a run that lost the batch must not clear the rows of the
// run that took it over. A batch not ready that holds rows a provider saw
// (a ledger copy cut short) is refused with ErrBatchSent: cleared, their
// referenceids would be free and its file recorded again would send them,
// paid ones included, with no status enquiry first.
func (l *Store) ClearRows(ctx context.Context, seq int64, o ledger.Owner) error {
	return l.clearRows(ctx, seq, o, true)
}

// clearRows is ClearRows; keepSent refuses a batch holding sent rows. An
// import's own abort (DeleteBatch) takes away what it copied, sent or not:
// the source ledger keeps it.
func (l *Store) clearRows(ctx context.Context, seq int64, o ledger.Owner, keepSent bool) error {
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	defer tx.Rollback()
	var status string
	var sent int64
	err = tx.QueryRowContext(ctx, `SELECT status, `+sentCheck+` FROM batches WHERE seq = ?1`, seq).Scan(&status, &sent)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	if status == "ready" {
		return fmt.Errorf("clear batch rows: batch %d is ready: its rows are kept", seq)
	}
	if keepSent && sent != 0 {
		return fmt.Errorf("clear batch rows: batch %d holds rows that were sent, or may have been (a ledger copy cut short?): "+
			"they are kept, and its file is not recorded again over them: %w", seq, ledger.ErrBatchSent)
	}
	for _, q := range []string{
		`DELETE FROM attempts WHERE batch = ?`,
		`DELETE FROM rows WHERE batch = ?`,
		`UPDATE batches SET status = 'ingesting', rows_total = 0 WHERE seq = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, seq); err != nil {
			return fmt.Errorf("clear batch rows: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	return nil
}

// sentCheck is true when something of batch ?1 was sent, or may have
// been: an attempt logged (but an enquiry about a row not sent yet, which
// a run makes before its first send), a dispatch, a row in flight or
// settled by the provider, one ever sent.
const sentCheck = `(EXISTS (SELECT 1 FROM attempts WHERE batch = ?1 AND NOT (kind = 'status' AND state = 'queued')) OR EXISTS (SELECT 1 FROM dispatches WHERE batch = ?1)
		OR EXISTS (SELECT 1 FROM rows WHERE batch = ?1 AND (attempts > 0 OR first_sent_ms IS NOT NULL
			OR NOT (state = 'queued' OR state = 'held' OR state = 'rejected' OR state = 'conflict'))))`

// DropUnsent implements ledger.Store.
func (l *Store) DropUnsent(ctx context.Context, seq int64, o ledger.Owner) error {
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("drop batch: %w", err)
	}
	defer tx.Rollback()
	var archived string
	var sent int64
	err = tx.QueryRowContext(ctx, `SELECT archived, `+sentCheck+` FROM batches WHERE seq = ?1`, seq).Scan(&archived, &sent)
	switch {
	case err != nil:
		return fmt.Errorf("drop batch: %w", err)
	case archived != "":
		return fmt.Errorf("drop batch: %w (to %s)", ledger.ErrBatchArchived, archived)
	case sent != 0:
		return fmt.Errorf("drop batch: %w", ledger.ErrBatchSent)
	}
	// Its only attempts are enquiries made before a first send.
	for _, q := range []string{`DELETE FROM attempts WHERE batch = ?`, `DELETE FROM rows WHERE batch = ?`, `DELETE FROM batches WHERE seq = ?`} {
		if _, err := tx.ExecContext(ctx, q, seq); err != nil {
			return fmt.Errorf("drop batch: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("drop batch: %w", err)
	}
	return nil
}

// DeleteBatch removes a batch that never became ready, rows and all, while
// o holds its lease.
func (l *Store) DeleteBatch(ctx context.Context, seq int64, o ledger.Owner) error {
	if err := l.clearRows(ctx, seq, o, false); err != nil {
		return err
	}
	if _, err := l.w.ExecContext(ctx, `DELETE FROM batches WHERE seq = ? AND status = 'ingesting' AND lease_owner = ?`, seq, o.ID); err != nil {
		return fmt.Errorf("delete batch: %w", err)
	}
	return nil
}

// Batch returns the batch with the given id; "" or "latest" resolve as
// ResolveBatch does.
func (l *Store) Batch(ctx context.Context, id string) (ledger.Batch, error) {
	if id == "" || id == "latest" {
		return l.resolve(ctx, id)
	}
	b, err := sqlrow.Batch(l.r.QueryRowContext(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Batch{}, fmt.Errorf("batch %q: %w", id, ledger.ErrNoBatch)
	}
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("read batch %s: %w", id, err)
	}
	return b, nil
}

// resolve picks the only batch (id "") or the newest one (id "latest").
func (l *Store) resolve(ctx context.Context, id string) (ledger.Batch, error) {
	bs, err := l.Batches(ctx)
	if err != nil {
		return ledger.Batch{}, err
	}
	switch {
	case len(bs) == 0:
		return ledger.Batch{}, fmt.Errorf("ledger %s: %w", l.path, ledger.ErrNoBatch)
	case id == "latest" || len(bs) == 1:
		return bs[len(bs)-1], nil
	default:
		return ledger.Batch{}, fmt.Errorf("ledger %s holds %d batches: pass --batch ID or --batch latest: %w", l.path, len(bs), ledger.ErrAmbiguousBatch)
	}
}

// BatchesWithContent lists the batches read from files of content hash
// hash, oldest first.
func (l *Store) BatchesWithContent(ctx context.Context, hash string) ([]ledger.Batch, error) {
	return l.batchesWhere(ctx, "WHERE content_hash = ?", hash)
}

// HasRefsStartingWith reports whether a sendable row of batch seq has a
// referenceid whose first 12 characters are one of prefixes.
func (l *Store) HasRefsStartingWith(ctx context.Context, seq int64, prefixes ...string) (bool, error) {
	if len(prefixes) == 0 {
		return false, nil
	}
	q := `SELECT EXISTS (SELECT 1 FROM rows WHERE batch = ? AND request IS NOT NULL AND substr(referenceid, 1, 12) IN (?` +
		strings.Repeat(", ?", len(prefixes)-1) + `))`
	args := []any{seq}
	for _, p := range prefixes {
		args = append(args, p)
	}
	var some bool
	if err := l.r.QueryRowContext(ctx, q, args...).Scan(&some); err != nil {
		return false, fmt.Errorf("read referenceids: %w", err)
	}
	return some, nil
}

// RefHolders implements ledger.Reader, through the referenceid index.
func (l *Store) RefHolders(ctx context.Context, refs []string) (map[string]ledger.RefHolder, error) {
	out := map[string]ledger.RefHolder{}
	for len(refs) > 0 {
		n := min(len(refs), sqlrow.RefHoldersChunk)
		js, err := json.Marshal(refs[:n])
		if err != nil {
			return nil, fmt.Errorf("read referenceids: %w", err)
		}
		refs = refs[n:]
		rs, err := l.r.QueryContext(ctx, `SELECT `+sqlrow.RefHolderCols+` FROM rows INDEXED BY rows_referenceid
			WHERE request IS NOT NULL AND referenceid IN (SELECT value FROM json_each(?))`, string(js))
		if err == nil {
			err = sqlrow.RefHolders(rs, out)
			rs.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("read referenceids: %w", err)
		}
	}
	return out, nil
}

// Batches lists every batch, oldest first.
func (l *Store) Batches(ctx context.Context) ([]ledger.Batch, error) { return l.batchesWhere(ctx, "") }

// batchesWhere lists the batches a WHERE clause picks, oldest first.
func (l *Store) batchesWhere(ctx context.Context, where string, args ...any) ([]ledger.Batch, error) {
	rs, err := l.r.QueryContext(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches `+where+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	defer rs.Close()
	var out []ledger.Batch
	for rs.Next() {
		b, err := sqlrow.Batch(rs)
		if err != nil {
			return nil, fmt.Errorf("list batches: %w", err)
		}
		out = append(out, b)
	}
	return out, rs.Err()
}

// Runners implements ledger.Reader: the lease's holder, while it lives
// (proc.Alive, as Acquire judges it) and is not this process.
func (l *Store) Runners(ctx context.Context, seq int64) ([]ledger.Runner, error) {
	var (
		owner, host  sql.NullString
		pid, expires sql.NullInt64
	)
	err := l.r.QueryRowContext(ctx, `SELECT lease_owner, lease_host, lease_pid, lease_expires_ms FROM batches WHERE seq = ?`, seq).
		Scan(&owner, &host, &pid, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read batch lease: %w", err)
	}
	me := ledger.NewOwner("")
	if !owner.Valid || expires.Int64 <= l.nowMS() || (host.String == me.Host && int(pid.Int64) == me.PID) ||
		!proc.Alive(host.String, int(pid.Int64), me.Host) {
		return nil, nil
	}
	return []ledger.Runner{{Host: host.String, PID: int(pid.Int64), Until: time.UnixMilli(expires.Int64)}}, nil
}
