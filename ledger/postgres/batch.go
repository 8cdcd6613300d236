package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/proc"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// Acquire implements ledger.Store. On a shared ledger it joins: o gets a
// session (a lease of its own) on the batch, beside those of the other
// processes running it. The first process records the file; while its
// lease lives, the others get ErrBatchIngesting and wait. An ingest whose
// process died is taken over (the caller clears its rows and records the
// file again).
func (s *Store) Acquire(ctx context.Context, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration) (ledger.Batch, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var b ledger.Batch
	// Run again whole when PostgreSQL rolls it back as a deadlock victim:
	// after a frozen recording is ended (below), that process, should it
	// resume at once, may be clearing its session as this takes it over.
	once := func() (err error) {
		b, err = s.acquireOnce(ctx, nb, o, ttl)
		return err
	}
	err := retrying(once)
	why := ""
	if isLockTimeout(err) {
		// Mostly a recording in progress, else an archive. A recording
		// whose process froze in the middle of a statement holds its locks
		// for as long as it stays frozen: end it, and try again.
		var ended bool
		if ended, why = s.endFrozenIngest(ctx, nb.ID, o); ended {
			if err = retrying(once); err == nil && b.TookOver != "" {
				b.TookOver += ", frozen in the middle of a statement: its connection was ended"
			}
		}
	}
	if isLockTimeout(err) {
		return ledger.Batch{}, fmt.Errorf("batch %s is busy: another process holds it%s: %w", nb.ID, why, ledger.ErrBatchIngesting)
	}
	return b, err
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available.
func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

func (s *Store) acquireOnce(ctx context.Context, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration) (ledger.Batch, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	defer tx.Rollback(ctx)
	// The lock below waits for a recording's chunk to commit: bounded, it
	// is the caller's wait for the recording, which says so and polls.
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	return s.acquire(ctx, tx, nb, o, ttl)
}

// ingestAppName is the application_name of a recording's connection while
// it is in a chunk's transaction. PostgreSQL keeps 63 bytes of it, in
// ASCII: an owner id that does not fit as it is goes as a digest.
func ingestAppName(o ledger.Owner) string {
	const prefix = "aopbatch ingest "
	plain := len(prefix)+len(o.ID) <= 63
	for _, c := range o.ID {
		plain = plain && c > ' ' && c < 0x7f
	}
	if plain {
		return prefix + o.ID
	}
	sum := sha256.Sum256([]byte(o.ID))
	return prefix + hex.EncodeToString(sum[:16])
}

// endFrozenIngest ends the connection of batch id's recording when the
// recording process's lease has run out and that connection has waited on
// its own process, in the middle of a statement, longer than a
// transaction of ours may sit idle. It reports whether it ended one, else
// why not, for the caller's "busy".
//
// Such a process is frozen (SIGSTOP, a suspended VM) in the middle of a
// COPY, most likely: the server waits on it, busy rather than idle, so no
// idle_in_transaction_session_timeout ends the transaction, and its kernel
// keeps the connection alive, so no TCP timer does either. A process that
// is slow but alive is never waited on that long in the middle of a
// statement, and is left alone, as before. Ending the connection rolls the
// chunk back; a recording only ever stores rows, so nothing was sent from
// it, and the taker records the file again.
func (s *Store) endFrozenIngest(ctx context.Context, id string, o ledger.Owner) (bool, string) {
	var (
		owner, host string
		pid         int64
	)
	err := s.pool.QueryRow(ctx, `SELECT b.ingest_owner, COALESCE(s.host, ''), COALESCE(s.pid, 0) FROM batches b
		LEFT JOIN sessions s ON s.batch = b.seq AND s.owner = b.ingest_owner
		WHERE b.id = $1 AND b.status = 'ingesting' AND b.ingest_owner <> $2
			AND (s.owner IS NULL OR s.expires_ms <= $3)`, id, o.ID, s.nowMS()).Scan(&owner, &host, &pid)
	if err != nil {
		// No recording, or one whose process still holds its lease; a
		// failed read is the next poll's to retry.
		return false, ""
	}
	who := "the process recording it"
	if host != "" {
		who = fmt.Sprintf("the process recording it (pid %d on %s)", pid, host)
	}
	name := ingestAppName(ledger.Owner{ID: owner})
	// The backends first, then the ending: PostgreSQL may evaluate a
	// WHERE's conditions in any order, an aggregate's FILTER it may not
	// push below. The retry's lock wait covers the moments the ended
	// backend takes to exit.
	var ended int
	err = s.pool.QueryRow(ctx, `WITH frozen AS (SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()
				AND state = 'active' AND wait_event_type = 'Client' AND wait_event IN ('ClientRead', 'ClientWrite')
				AND state_change < now() - make_interval(secs => $2))
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM frozen`,
		name, s.abandon.Seconds()).Scan(&ended)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "42501":
		return false, fmt.Sprintf(": %s stopped past its lease in the middle of a statement, and this database role may not end its connection (it needs that process's role, or pg_signal_backend; a superuser's, a superuser)", who)
	case err != nil:
		return false, fmt.Sprintf(" (ending the connection of %s, which stopped past its lease: %v)", who, err)
	case ended > 0:
		return true, ""
	}
	// What another role's connection is doing shows only to that role, or
	// to one with pg_read_all_stats: the name does to all.
	var hidden int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid() AND state IS NULL`,
		name).Scan(&hidden); err == nil && hidden > 0 {
		return false, fmt.Sprintf(": %s stopped past its lease, and this database role may not see whether its connection is frozen in the middle of a statement (it needs that process's role, or pg_read_all_stats)", who)
	}
	return false, ""
}

func (s *Store) acquire(ctx context.Context, tx pgx.Tx, nb ledger.NewBatch, o ledger.Owner, ttl time.Duration) (ledger.Batch, error) {
	now := s.nowMS()
	header := sqlrow.Header(nb.Header)
	// Create it if new; either way lock it, so that joins and ingest
	// takeovers of one batch take turns.
	_, err := tx.Exec(ctx, `INSERT INTO batches (id, content_hash, source, header, status, created_ms, ingest_owner)
		VALUES ($1, $2, $3, $4, 'ingesting', $5, $6) ON CONFLICT (id) DO NOTHING`,
		nb.ID, nb.ContentHash, nb.Source, header, now, o.ID)
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	var (
		seq                    int64
		hash, status, archived string
		ingestOwner            *string
		ingesterExpires        *int64
		ingesterHasSession     bool
		ingesterHost           string
		ingesterPID            int64
	)
	err = tx.QueryRow(ctx, `SELECT b.seq, b.content_hash, b.status, b.archived, b.ingest_owner, s.expires_ms, s.owner IS NOT NULL,
			COALESCE(s.host, ''), COALESCE(s.pid, 0)
		FROM batches b LEFT JOIN sessions s ON s.batch = b.seq AND s.owner = b.ingest_owner
		WHERE b.id = $1 FOR UPDATE OF b`, nb.ID).Scan(&seq, &hash, &status, &archived, &ingestOwner, &ingesterExpires, &ingesterHasSession,
		&ingesterHost, &ingesterPID)
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	if archived != "" {
		return ledger.Batch{}, fmt.Errorf("batch %s (in %s): %w", nb.ID, archived, ledger.ErrBatchArchived)
	}
	if nb.ContentHash != "" && hash != nb.ContentHash {
		return ledger.Batch{}, fmt.Errorf("batch %s: %w", nb.ID, ledger.ErrBatchMismatch)
	}
	var tookOver string
	if status == "ingesting" && ingestOwner != nil && *ingestOwner != o.ID {
		if ingesterHasSession && *ingesterExpires > now {
			return ledger.Batch{}, fmt.Errorf("batch %s: %w", nb.ID, ledger.ErrBatchIngesting)
		}
		// The recording process died: end its session, so it writes
		// nothing more should it only have been paused, and take over.
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE batch = $1 AND owner = $2`, seq, *ingestOwner); err != nil {
			return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE batches SET ingest_owner = $1 WHERE seq = $2`, o.ID, seq); err != nil {
			return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
		}
		tookOver = "a process whose lease ran out"
		if ingesterHost != "" {
			tookOver = fmt.Sprintf("pid %d on %s, whose lease ran out", ingesterPID, ingesterHost)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (batch, owner, host, pid, expires_ms) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (batch, owner) DO UPDATE SET expires_ms = EXCLUDED.expires_ms`,
		seq, o.ID, o.Host, o.PID, now+ttl.Milliseconds()); err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	b, err := sqlrow.Batch(tx.QueryRow(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches WHERE seq = $1`, seq))
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return ledger.Batch{}, fmt.Errorf("acquire batch %s: %w", nb.ID, err)
	}
	b.TookOver = tookOver
	return b, nil
}

// Renew implements ledger.Store: it extends o's session, and reads the
// database's clock again on the way.
func (s *Store) Renew(ctx context.Context, batchID string, o ledger.Owner, ttl time.Duration) error {
	if s.clock == nil {
		_ = s.syncClock(ctx) // a failure here shows in the update below
	}
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET expires_ms = $1
		WHERE batch = (SELECT seq FROM batches WHERE id = $2) AND owner = $3`,
		s.nowMS()+ttl.Milliseconds(), batchID, o.ID)
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", batchID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("renew lease on %s: %w", batchID, ledger.ErrLeaseLost)
	}
	return nil
}

// Release implements ledger.Store: it ends o's session. Rows o still had
// in flight (it should have none) are then no live session's, and the
// next RecoverInflight turns them into unknown.
func (s *Store) Release(ctx context.Context, batchID string, o ledger.Owner) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE batch = (SELECT seq FROM batches WHERE id = $1) AND owner = $2`,
		batchID, o.ID); err != nil {
		return fmt.Errorf("release lease on %s: %w", batchID, err)
	}
	return nil
}

// ClearRows implements ledger.Store.
func (s *Store) ClearRows(ctx context.Context, seq int64, o ledger.Owner) error {
	ctx, cancel := s.boundBulk(ctx)
	defer cancel()
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	defer tx.Rollback(ctx)
	// A batch not ready may still hold rows a provider saw: a ledger copy
	// cut short (ImportBatch). Cleared, their referenceids would be free
	// and the file recorded again would send them, paid ones included,
	// with no status enquiry first.
	var sent bool
	if err := tx.QueryRow(ctx, `SELECT `+sentCheck+` FROM batches WHERE seq = $1 FOR UPDATE`, seq).Scan(&sent); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	if sent {
		return fmt.Errorf("clear batch rows: batch %d holds rows that were sent, or may have been (a ledger copy cut short?): "+
			"they are kept, and its file is not recorded again over them: %w", seq, ledger.ErrBatchSent)
	}
	if err := clearRows(ctx, tx, seq); err != nil {
		return fmt.Errorf("clear batch rows: %w", err)
	}
	return tx.Commit(ctx)
}

// sentCheck is true when something of batch $1 was sent, or may have
// been: an attempt logged (but an enquiry about a row not sent yet, which
// a run makes before its first send), a row in flight or settled by the
// provider, one ever dispatched.
const sentCheck = `(EXISTS (SELECT 1 FROM attempts WHERE batch = $1 AND NOT (kind = 'status' AND state = 'queued'))
		OR EXISTS (SELECT 1 FROM rows WHERE batch = $1 AND (attempts > 0 OR first_sent_ms IS NOT NULL
			OR state NOT IN ('queued', 'held', 'rejected', 'conflict'))))`

// clearRows deletes a batch's rows and attempts inside tx, refusing a
// ready batch: its rows are the record of what was sent.
func clearRows(ctx context.Context, tx pgx.Tx, seq int64) error {
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM batches WHERE seq = $1 FOR UPDATE`, seq).Scan(&status)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if status == "ready" {
		return fmt.Errorf("batch %d is ready: its rows are kept", seq)
	}
	for _, q := range []string{
		`DELETE FROM attempts WHERE batch = $1`,
		`DELETE FROM rows WHERE batch = $1`,
		`UPDATE batches SET status = 'ingesting', rows_total = 0 WHERE seq = $1`,
	} {
		if _, err := tx.Exec(ctx, q, seq); err != nil {
			return err
		}
	}
	return nil
}

// DropUnsent implements ledger.Store.
func (s *Store) DropUnsent(ctx context.Context, seq int64, o ledger.Owner) error {
	ctx, cancel := s.boundBulk(ctx)
	defer cancel()
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("drop batch: %w", err)
	}
	defer tx.Rollback(ctx)
	var archived string
	var sent bool
	err = tx.QueryRow(ctx, `SELECT archived, `+sentCheck+` FROM batches WHERE seq = $1 FOR UPDATE`, seq).Scan(&archived, &sent)
	switch {
	case err != nil:
		return fmt.Errorf("drop batch: %w", err)
	case archived != "":
		return fmt.Errorf("drop batch: %w (to %s)", ledger.ErrBatchArchived, archived)
	case sent:
		return fmt.Errorf("drop batch: %w", ledger.ErrBatchSent)
	}
	// The check above reads the rows as its statement began: a process of
	// the batch may have claimed some since (claims lock no batch row), and
	// is sending them. The delete reads each row as it is now, and one
	// that went in flight since is kept, the drop refused.
	err = tx.QueryRow(ctx, `WITH gone AS (DELETE FROM rows WHERE batch = $1 RETURNING state, attempts, first_sent_ms)
		SELECT EXISTS (SELECT 1 FROM gone WHERE attempts > 0 OR first_sent_ms IS NOT NULL
				OR state NOT IN ('queued', 'held', 'rejected', 'conflict'))
			OR EXISTS (SELECT 1 FROM attempts WHERE batch = $1 AND NOT (kind = 'status' AND state = 'queued'))`, seq).Scan(&sent)
	switch {
	case err != nil:
		return fmt.Errorf("drop batch: %w", err)
	case sent:
		return fmt.Errorf("drop batch: %w", ledger.ErrBatchSent)
	}
	// Its only attempts are enquiries made before a first send.
	for _, q := range []string{`DELETE FROM attempts WHERE batch = $1`, `DELETE FROM batches WHERE seq = $1`} {
		if _, err := tx.Exec(ctx, q, seq); err != nil {
			return fmt.Errorf("drop batch: %w", err)
		}
	}
	return tx.Commit(ctx)
}

// deleteBatch removes a batch that never became ready, rows and all,
// while o holds a session on it.
func (s *Store) deleteBatch(ctx context.Context, seq int64, o ledger.Owner) error {
	ctx, cancel := s.boundBulk(ctx)
	defer cancel()
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("delete batch: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := clearRows(ctx, tx, seq); err != nil {
		return fmt.Errorf("delete batch: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM batches WHERE seq = $1 AND status = 'ingesting'`, seq); err != nil {
		return fmt.Errorf("delete batch: %w", err)
	}
	return tx.Commit(ctx)
}

// Batch implements ledger.Reader.
func (s *Store) Batch(ctx context.Context, id string) (ledger.Batch, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if id == "" || id == "latest" {
		return s.resolve(ctx, id)
	}
	b, err := sqlrow.Batch(s.pool.QueryRow(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Batch{}, fmt.Errorf("batch %q: %w", id, ledger.ErrNoBatch)
	}
	if err != nil {
		return ledger.Batch{}, fmt.Errorf("read batch %s: %w", id, err)
	}
	return b, nil
}

// resolve picks the only batch (id "") or the newest one (id "latest").
func (s *Store) resolve(ctx context.Context, id string) (ledger.Batch, error) {
	bs, err := s.Batches(ctx)
	if err != nil {
		return ledger.Batch{}, err
	}
	switch {
	case len(bs) == 0:
		return ledger.Batch{}, fmt.Errorf("ledger %s: %w", s.location, ledger.ErrNoBatch)
	case id == "latest" || len(bs) == 1:
		return bs[len(bs)-1], nil
	default:
		return ledger.Batch{}, fmt.Errorf("ledger %s holds %d batches: pass --batch ID or --batch latest: %w", s.location, len(bs), ledger.ErrAmbiguousBatch)
	}
}

// Batches implements ledger.Reader.
func (s *Store) Batches(ctx context.Context) ([]ledger.Batch, error) { return s.batchesWhere(ctx, "") }

// BatchesWithContent implements ledger.Reader.
func (s *Store) BatchesWithContent(ctx context.Context, hash string) ([]ledger.Batch, error) {
	return s.batchesWhere(ctx, "WHERE content_hash = $1", hash)
}

func (s *Store) batchesWhere(ctx context.Context, where string, args ...any) ([]ledger.Batch, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rs, err := s.pool.Query(ctx, `SELECT `+sqlrow.BatchCols+` FROM batches `+where+` ORDER BY seq`, args...)
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

// RefHolders implements ledger.Reader, through the referenceid index.
func (s *Store) RefHolders(ctx context.Context, refs []string) (map[string]ledger.RefHolder, error) {
	out := map[string]ledger.RefHolder{}
	for len(refs) > 0 {
		n := min(len(refs), sqlrow.RefHoldersChunk)
		cctx, cancel := s.bound(ctx)
		rs, err := s.pool.Query(cctx, `SELECT `+sqlrow.RefHolderCols+` FROM rows WHERE request IS NOT NULL AND referenceid = ANY($1)`, refs[:n])
		refs = refs[n:]
		if err == nil {
			err = sqlrow.RefHolders(rs, out)
			rs.Close()
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read referenceids: %w", err)
		}
	}
	return out, nil
}

// HasRefsStartingWith implements ledger.Reader.
func (s *Store) HasRefsStartingWith(ctx context.Context, seq int64, prefixes ...string) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(prefixes) == 0 {
		return false, nil
	}
	var some bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rows WHERE batch = $1 AND request IS NOT NULL
		AND substr(referenceid, 1, 12) = ANY($2))`, seq, prefixes).Scan(&some)
	if err != nil {
		return false, fmt.Errorf("read referenceids: %w", err)
	}
	return some, nil
}

// Runners implements ledger.Reader: the sessions on batch seq whose lease
// has not run out and whose process may live (proc.Alive), this
// process's excepted.
func (s *Store) Runners(ctx context.Context, seq int64) ([]ledger.Runner, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	me := ledger.NewOwner("")
	rows, err := s.pool.Query(ctx, `SELECT host, pid, expires_ms FROM sessions
		WHERE batch = $1 AND expires_ms > $2 AND NOT (host = $3 AND pid = $4) ORDER BY host, pid`, seq, s.nowMS(), me.Host, me.PID)
	if err != nil {
		return nil, fmt.Errorf("read batch sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.Runner, error) {
		var (
			run     ledger.Runner
			pid     int64
			expires int64
		)
		err := r.Scan(&run.Host, &pid, &expires)
		run.PID, run.Until = int(pid), time.UnixMilli(expires)
		return run, err
	})
	if err != nil {
		return nil, fmt.Errorf("read batch sessions: %w", err)
	}
	// A process of this host that died is not running, though its lease
	// has yet to run out (status would name it for up to --lease-ttl).
	return slices.DeleteFunc(out, func(r ledger.Runner) bool { return !proc.Alive(r.Host, r.PID, me.Host) }), nil
}
