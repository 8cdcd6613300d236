package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// Page implements ledger.Reader.
func (s *Store) Page(ctx context.Context, seq int64, st ledger.State, after, limit int) ([]ledger.Row, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rs, err := s.pool.Query(ctx, `SELECT `+sqlrow.RowCols+` FROM rows WHERE batch = $1 AND state = $2 AND line > $3 ORDER BY line LIMIT $4`,
		seq, string(st), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read %s rows: %w", st, err)
	}
	defer rs.Close()
	out := make([]ledger.Row, 0, limit)
	for rs.Next() {
		out = append(out, ledger.Row{})
		if err := sqlrow.Row(rs, &out[len(out)-1]); err != nil {
			return nil, fmt.Errorf("read %s rows: %w", st, err)
		}
	}
	return out, rs.Err()
}

// Queued implements ledger.Reader.
func (s *Store) Queued(ctx context.Context, seq int64, after, limit int) ([]ledger.Row, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rs, err := s.pool.Query(ctx, `SELECT `+sqlrow.QueuedCols+`
		FROM rows WHERE batch = $1 AND state = 'queued' AND line > $2 ORDER BY line LIMIT $3`, seq, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read queued rows: %w", err)
	}
	defer rs.Close()
	out := make([]ledger.Row, 0, limit)
	for rs.Next() {
		r, err := sqlrow.Queued(rs, seq)
		if err != nil {
			return nil, fmt.Errorf("read queued rows: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// Row implements ledger.Reader.
func (s *Store) Row(ctx context.Context, seq int64, line int) (ledger.Row, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var r ledger.Row
	err := sqlrow.Row(s.pool.QueryRow(ctx, `SELECT `+sqlrow.RowCols+` FROM rows WHERE batch = $1 AND line = $2`, seq, line), &r)
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Row{}, fmt.Errorf("line %d: %w", line, ledger.ErrNoRow)
	}
	if err != nil {
		return ledger.Row{}, fmt.Errorf("read line %d: %w", line, err)
	}
	return r, nil
}

// EachRow implements ledger.Reader. Rows are read a page at a time, so
// no connection is held for the whole walk of a big batch.
func (s *Store) EachRow(ctx context.Context, seq int64, fn func(*ledger.Row) error) error {
	const page = 2048
	var r ledger.Row
	for after := 0; ; {
		buf, err := s.rowPage(ctx, seq, after, page)
		if err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		for i := range buf {
			r = buf[i]
			if err := fn(&r); err != nil {
				return err
			}
		}
		if len(buf) < page {
			return nil
		}
		after = buf[len(buf)-1].Line
	}
}

// rowPage reads up to limit rows after line after, in one bounded call:
// a walk of a big batch may take long, one page of it may not.
func (s *Store) rowPage(ctx context.Context, seq int64, after, limit int) ([]ledger.Row, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+sqlrow.RowCols+`, claimed_ms FROM rows WHERE batch = $1 AND line > $2 ORDER BY line LIMIT $3`, seq, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		buf     []ledger.Row
		r       ledger.Row
		claimed sql.NullInt64
	)
	for rows.Next() {
		if err := sqlrow.Row(rows, &r, &claimed); err != nil {
			return nil, err
		}
		// A dispatch, a claim and a mark each set claimed_ms.
		if r.State == ledger.StateInflight && claimed.Valid {
			r.InFlightSince = time.UnixMilli(claimed.Int64)
		}
		buf = append(buf, r)
	}
	return buf, rows.Err()
}

// Counts implements ledger.Reader.
func (s *Store) Counts(ctx context.Context, seq int64) (ledger.Counts, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rs, err := s.pool.Query(ctx, `SELECT state, count(*), coalesce(sum(amount_paise), 0)::bigint FROM rows WHERE batch = $1 GROUP BY state`, seq)
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	defer rs.Close()
	c := ledger.Counts{}
	for rs.Next() {
		var st string
		var t ledger.Tally
		if err := rs.Scan(&st, &t.Rows, &t.Paise); err != nil {
			return nil, fmt.Errorf("count rows: %w", err)
		}
		c[ledger.State(st)] = t
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	return c, nil
}

// CountState implements ledger.Reader.
func (s *Store) CountState(ctx context.Context, seq int64, st ledger.State) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM rows WHERE batch = $1 AND state = $2`, seq, string(st)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s rows: %w", st, err)
	}
	return n, nil
}

// Any implements ledger.Reader.
func (s *Store) Any(ctx context.Context, seq int64, st ledger.State) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var some bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rows WHERE batch = $1 AND state = $2)`, seq, string(st)).Scan(&some); err != nil {
		return false, fmt.Errorf("read rows: %w", err)
	}
	return some, nil
}

// EachAttempt implements ledger.Reader.
func (s *Store) EachAttempt(ctx context.Context, seq int64, fn func(*ledger.AttemptRow) error) error {
	const page = 4096
	for after := int64(0); ; {
		buf, last, err := s.attemptPage(ctx, seq, after, page)
		if err != nil {
			return fmt.Errorf("read attempts: %w", err)
		}
		for i := range buf {
			if err := fn(&buf[i]); err != nil {
				return err
			}
		}
		if len(buf) < page {
			return nil
		}
		after = last
	}
}

// attemptPage reads up to limit attempts after id after, in one bounded
// call, and returns the last one's id.
func (s *Store) attemptPage(ctx context.Context, seq, after int64, limit int) ([]ledger.AttemptRow, int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// The join finds each attempt's process by primary key; an attempt
	// with none (logged before processes were) reads as not known.
	rows, err := s.pool.Query(ctx, `SELECT a.id, a.line, a.kind, a.at_ms, a.latency_ms, a.http_status, a.response_code, a.class,
			a.state, a.message, COALESCE(p.host, ''), COALESCE(p.pid, 0)
		FROM attempts a LEFT JOIN processes p ON p.id = a.process
		WHERE a.batch = $1 AND a.id > $2 ORDER BY a.id LIMIT $3`, seq, after, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var (
		buf []ledger.AttemptRow
		a   ledger.AttemptRow
	)
	for rows.Next() {
		var at, lat int64
		var code *int32
		var state string
		if err := rows.Scan(&after, &a.Line, &a.Kind, &at, &lat, &a.HTTPStatus, &code, &a.Class, &state, &a.Message,
			&a.Process.Host, &a.Process.PID); err != nil {
			return nil, 0, err
		}
		a.At, a.Latency, a.State = time.UnixMilli(at), time.Duration(lat)*time.Millisecond, ledger.State(state)
		a.Code = -1
		if code != nil {
			a.Code = int(*code)
		}
		buf = append(buf, a)
	}
	return buf, after, rows.Err()
}

// Move implements ledger.Store. A row in flight moves only for the
// session that claimed it: the caller's.
func (s *Store) Move(ctx context.Context, seq int64, o ledger.Owner, from, to ledger.State, operator int64, message string) (int64, error) {
	// A row goes in flight only through a writer, which names its claim.
	if !ledger.CanMove(from, to) || to == ledger.StateInflight {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, ledger.ErrTransition)
	}
	ctx, cancel := s.boundBulk(ctx)
	defer cancel()
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	defer tx.Rollback(ctx)
	q := `UPDATE rows SET state = $1, message = $2, updated_ms = $3, claimed_by = NULL, claim = NULL, claimed_ms = NULL
		WHERE batch = $4 AND state = $5 AND (state <> 'inflight' OR claimed_by = $6)`
	args := []any{string(to), message, s.nowMS(), seq, string(from), o.ID}
	if operator > 0 {
		q += ` AND operator = $7`
		args = append(args, operator)
	}
	tag, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	return tag.RowsAffected(), nil
}

// recoverWhy is the message of a row recovered from a dead session.
const recoverWhy = ledger.RecoveredMessage

// RecoverInflight implements ledger.Store: it ends the sessions of batch
// seq whose lease expired (o's excepted), and turns into unknown every row
// in flight that no live session holds. A row dispatched but never
// answered counts as sent, from when it was claimed: it may have been.
func (s *Store) RecoverInflight(ctx context.Context, seq int64, o ledger.Owner) (ledger.Recovered, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// A deadlock victim (its row updates against a writer's, say) was
	// rolled back whole, and may simply run again.
	var r ledger.Recovered
	err := retrying(func() error {
		var err error
		r, err = s.recoverInflight(ctx, seq, o)
		return err
	})
	return r, err
}

func (s *Store) recoverInflight(ctx context.Context, seq int64, o ledger.Owner) (ledger.Recovered, error) {
	var r ledger.Recovered
	tx, err := s.beginHolding(ctx, seq, o)
	if err != nil {
		return r, fmt.Errorf("recover rows in flight: %w", err)
	}
	defer tx.Rollback(ctx)
	now := s.nowMS()
	// A session is deleted only when no write holds it (FOR KEY SHARE);
	// once it is gone, its process writes nothing more. One held by a
	// write is left for a later round: waiting on it would wait on a
	// paused process, and two processes whose leases ran out together
	// (both paused) would each hold its own and wait on the other's.
	ended, err := tx.Query(ctx, `DELETE FROM sessions WHERE batch = $1 AND owner IN (
			SELECT owner FROM sessions WHERE batch = $1 AND owner <> $2 AND expires_ms < $3
			ORDER BY owner FOR UPDATE SKIP LOCKED)
		RETURNING host, pid, expires_ms`, seq, o.ID, now)
	if err != nil {
		return r, fmt.Errorf("recover rows in flight: %w", err)
	}
	for ended.Next() {
		var (
			dead    ledger.Runner
			untilMS int64
		)
		if err := ended.Scan(&dead.Host, &dead.PID, &untilMS); err != nil {
			ended.Close()
			return r, fmt.Errorf("recover rows in flight: %w", err)
		}
		dead.Until = time.UnixMilli(untilMS)
		r.From = append(r.From, dead)
	}
	if err := ended.Err(); err != nil {
		return r, fmt.Errorf("recover rows in flight: %w", err)
	}
	tag, err := tx.Exec(ctx, `UPDATE rows SET state = 'unknown', message = $1, updated_ms = $2,
			attempts = attempts + CASE WHEN claim = 'dispatch' THEN 1 ELSE 0 END,
			first_sent_ms = CASE WHEN claim = 'dispatch' THEN COALESCE(first_sent_ms, claimed_ms) ELSE first_sent_ms END,
			claimed_by = NULL, claim = NULL, claimed_ms = NULL
		WHERE batch = $3 AND state = 'inflight'
			AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.batch = $3 AND s.owner = rows.claimed_by)`,
		recoverWhy, now, seq)
	if err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	r.Rows = tag.RowsAffected()
	return r, nil
}

// queryRower is what processID needs: the pool, or a transaction.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// processID returns p's id in the processes table, adding it when new,
// for an attempt's process column: nil (not known) for the zero Process.
// A process already there (every run of a host's pid but the first) is
// read, not written.
func processID(ctx context.Context, q queryRower, p ledger.Process) (*int64, error) {
	if p == (ledger.Process{}) {
		return nil, nil
	}
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM processes WHERE host = $1 AND pid = $2`, p.Host, int32(p.PID)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		// DO UPDATE, not NOTHING: it returns the id of a row another
		// session added since, once that commits.
		err = q.QueryRow(ctx, `INSERT INTO processes (host, pid) VALUES ($1, $2)
			ON CONFLICT (host, pid) DO UPDATE SET host = EXCLUDED.host RETURNING id`, p.Host, int32(p.PID)).Scan(&id)
	}
	if err != nil {
		return nil, fmt.Errorf("record process %s: %w", p, err)
	}
	return &id, nil
}
