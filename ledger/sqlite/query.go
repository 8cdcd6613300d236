package sqlite

import (
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Page returns up to limit rows of batch seq in state s with line > after,
// in line order. Callers page with the last line they saw, so a million-row
// batch never sits in memory.
//
// INDEXED BY: left to itself, SQLite 3.54 walks the batch by primary key
// for the line order, about half a second on a million rows even when no
// row is in state s (make bench, resume).
//
// Rows in a dispatch are seen as inflight, not queued (see inFlight).
func (l *Store) Page(ctx context.Context, seq int64, s ledger.State, after, limit int) ([]ledger.Row, error) {
	q, args := `SELECT `+sqlrow.RowCols+` FROM rows INDEXED BY rows_state WHERE batch = ? AND state = ? AND line > ? ORDER BY line LIMIT ?`,
		[]any{seq, string(s), after, limit}
	if s == ledger.StateQueued || s == ledger.StateInflight {
		disp, err := l.hasDispatches(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("read %s rows: %w", s, err)
		}
		if disp {
			cond := `+state = 'queued' AND line NOT IN ` + dispatchedLines
			if s == ledger.StateInflight {
				cond = `(+state = 'inflight' OR +state = 'queued' AND line IN ` + dispatchedLines + `)`
			}
			q = `SELECT ` + sqlrow.RowCols + ` FROM rows WHERE batch = ?1 AND line > ?2 AND ` + cond + ` ORDER BY line LIMIT ?3`
			args = []any{seq, after, limit}
		}
	}
	rs, err := l.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s rows: %w", s, err)
	}
	defer rs.Close()
	out := make([]ledger.Row, 0, limit)
	for rs.Next() {
		out = append(out, ledger.Row{})
		if err := sqlrow.Row(rs, &out[len(out)-1]); err != nil {
			return nil, fmt.Errorf("read %s rows: %w", s, err)
		}
		if s == ledger.StateInflight {
			out[len(out)-1].State = ledger.StateInflight
		}
	}
	return out, rs.Err()
}

// dispatchedLines is the subquery of a batch's (?1) dispatched lines.
const dispatchedLines = `(SELECT j.value FROM dispatches d, json_each(d.lines) j WHERE d.batch = ?1)`

func (l *Store) hasDispatches(ctx context.Context, seq int64) (bool, error) {
	var some bool
	err := l.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM dispatches WHERE batch = ?)`, seq).Scan(&some)
	return some, err
}

// dispatchedQueued tallies the rows of batch seq that are queued in the
// table but covered by a dispatch (see inFlight).
func (l *Store) dispatchedQueued(ctx context.Context, seq int64) (ledger.Tally, error) {
	var t ledger.Tally
	err := l.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(amount_paise), 0) FROM rows
		WHERE batch = ?1 AND +state = 'queued' AND line IN `+dispatchedLines, seq).Scan(&t.Rows, &t.Paise)
	return t, err
}

// inFlight returns the lines of batch seq that are queued in the table but
// covered by a dispatch, in line order, with when the latest dispatch of
// each was made: a run is sending them, or died while it might have.
// Readers show them as inflight, never as queued: "queued" tells a person
// the row was never sent, and exporting it for a resubmission under a new
// referenceid could pay it twice. Empty when the batch has no dispatch.
// Usually a few thousand, but every line of a batch whose run died with
// all of it dispatched: a slice, 16 bytes a line, walked beside the rows
// (a map held 100 MB for a million lines).
func (l *Store) inFlight(ctx context.Context, seq int64) ([]dispatched, error) {
	rs, err := l.r.QueryContext(ctx, `SELECT rows.line, x.at
		FROM (SELECT j.value AS line, max(d.at_ms) AS at FROM dispatches d, json_each(d.lines) j
			WHERE d.batch = ?1 GROUP BY j.value) AS x, rows
		WHERE rows.batch = ?1 AND rows.line = x.line AND +rows.state = 'queued'
		ORDER BY rows.line`, seq)
	if err != nil {
		return nil, fmt.Errorf("read dispatched rows: %w", err)
	}
	defer rs.Close()
	var set []dispatched
	for rs.Next() {
		var d dispatched
		if err := rs.Scan(&d.line, &d.at); err != nil {
			return nil, fmt.Errorf("read dispatched rows: %w", err)
		}
		set = append(set, d)
	}
	return set, rs.Err()
}

// dispatched is a line in a dispatch, and when that dispatch was made
// (Unix ms).
type dispatched struct {
	line int
	at   int64
}

// Queued is Page for queued rows with only what sending needs filled in:
// Batch, Line, ReferenceID, Operator, CANumber, AmountPaise, Request and
// State. It reads a fraction of what Page does per row.
func (l *Store) Queued(ctx context.Context, seq int64, after, limit int) ([]ledger.Row, error) {
	// The state index finds how far the next limit queued rows reach; the
	// rows are then read in one walk of the primary key up to there, which
	// costs less than fetching each through the index when most rows of
	// the range are queued, as on a first run.
	rs, err := l.r.QueryContext(ctx, `SELECT `+sqlrow.QueuedCols+`
		FROM rows WHERE batch = ?1 AND line > ?2 AND +state = 'queued'
			AND line <= (SELECT max(line) FROM (SELECT line FROM rows INDEXED BY rows_state
				WHERE batch = ?1 AND state = 'queued' AND line > ?2 ORDER BY line LIMIT ?3))
		ORDER BY line`, seq, after, limit)
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

// Row returns one row of batch seq.
func (l *Store) Row(ctx context.Context, seq int64, line int) (ledger.Row, error) {
	var r ledger.Row
	err := sqlrow.Row(l.r.QueryRowContext(ctx, `SELECT `+sqlrow.RowCols+` FROM rows WHERE batch = ? AND line = ?`, seq, line), &r)
	if errors.Is(err, sql.ErrNoRows) {
		return ledger.Row{}, fmt.Errorf("line %d: %w", line, ledger.ErrNoRow)
	}
	if err != nil {
		return ledger.Row{}, fmt.Errorf("read line %d: %w", line, err)
	}
	if r.State == ledger.StateQueued {
		var in bool
		if err := l.r.QueryRowContext(ctx, `SELECT ?2 IN `+dispatchedLines, seq, line).Scan(&in); err != nil {
			return ledger.Row{}, fmt.Errorf("read line %d: %w", line, err)
		}
		if in {
			r.State = ledger.StateInflight // see inFlight
		}
	}
	return r, nil
}

// EachRow calls fn for every row of batch seq in line order. The Row passed
// is reused between calls. Rows in a dispatch are seen as inflight.
func (l *Store) EachRow(ctx context.Context, seq int64, fn func(*ledger.Row) error) error {
	set, err := l.inFlight(ctx, seq)
	if err != nil {
		return err
	}
	rs, err := l.r.QueryContext(ctx, `SELECT `+sqlrow.RowCols+` FROM rows WHERE batch = ? ORDER BY line`, seq)
	if err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	defer rs.Close()
	var r ledger.Row
	for rs.Next() {
		if err := sqlrow.Row(rs, &r); err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		for len(set) > 0 && set[0].line < r.Line {
			set = set[1:]
		}
		switch {
		case r.State == ledger.StateQueued && len(set) > 0 && set[0].line == r.Line:
			r.State, r.InFlightSince = ledger.StateInflight, time.UnixMilli(set[0].at)
		case r.State == ledger.StateInflight:
			r.InFlightSince = r.Updated // a mark sets it
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rs.Err()
}

// Counts tallies batch seq by state (from the state index alone).
func (l *Store) Counts(ctx context.Context, seq int64) (ledger.Counts, error) {
	c, err := countsIn(ctx, l.r, seq)
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if disp, err := l.hasDispatches(ctx, seq); err != nil || !disp {
		return c, err
	}
	t, err := l.dispatchedQueued(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if t.Rows > 0 {
		q, f := c[ledger.StateQueued], c[ledger.StateInflight]
		q.Rows, q.Paise, f.Rows, f.Paise = q.Rows-t.Rows, q.Paise-t.Paise, f.Rows+t.Rows, f.Paise+t.Paise
		c[ledger.StateInflight] = f
		if c[ledger.StateQueued] = q; q.Rows == 0 {
			delete(c, ledger.StateQueued)
		}
	}
	return c, nil
}

// CountState counts batch seq's rows in state s (from the state index).
func (l *Store) CountState(ctx context.Context, seq int64, s ledger.State) (int64, error) {
	var n int64
	if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM rows WHERE batch = ? AND state = ?`, seq, string(s)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s rows: %w", s, err)
	}
	if s != ledger.StateQueued && s != ledger.StateInflight {
		return n, nil
	}
	// Rows in a dispatch count as inflight, not queued.
	if disp, err := l.hasDispatches(ctx, seq); err != nil || !disp {
		return n, err
	}
	t, err := l.dispatchedQueued(ctx, seq)
	if err != nil {
		return 0, fmt.Errorf("count %s rows: %w", s, err)
	}
	if s == ledger.StateQueued {
		return n - t.Rows, nil
	}
	return n + t.Rows, nil
}

// Any reports whether batch seq has a row in state s.
func (l *Store) Any(ctx context.Context, seq int64, s ledger.State) (bool, error) {
	if s == ledger.StateQueued || s == ledger.StateInflight {
		page, err := l.Page(ctx, seq, s, 0, 1) // rows in a dispatch are inflight
		return len(page) > 0, err
	}
	var one int
	err := l.r.QueryRowContext(ctx, `SELECT 1 FROM rows WHERE batch = ? AND state = ? LIMIT 1`, seq, string(s)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read rows: %w", err)
	}
	return true, nil
}

// EachAttempt calls fn for every logged attempt of batch seq, oldest first.
func (l *Store) EachAttempt(ctx context.Context, seq int64, fn func(*ledger.AttemptRow) error) error {
	// The join finds each attempt's process by primary key; an attempt
	// with none (logged before processes were) reads as not known.
	rs, err := l.r.QueryContext(ctx, `SELECT a.line, a.kind, a.at_ms, a.latency_ms, a.http_status, a.response_code, a.class, a.state,
			a.message, COALESCE(p.host, ''), COALESCE(p.pid, 0)
		FROM attempts a LEFT JOIN processes p ON p.id = a.process WHERE a.batch = ? ORDER BY a.id`, seq)
	if err != nil {
		return fmt.Errorf("read attempts: %w", err)
	}
	defer rs.Close()
	var a ledger.AttemptRow
	for rs.Next() {
		var at, lat int64
		var code sql.NullInt64
		var state string
		if err := rs.Scan(&a.Line, &a.Kind, &at, &lat, &a.HTTPStatus, &code, &a.Class, &state, &a.Message,
			&a.Process.Host, &a.Process.PID); err != nil {
			return fmt.Errorf("read attempts: %w", err)
		}
		a.At, a.Latency, a.State = time.UnixMilli(at), time.Duration(lat)*time.Millisecond, ledger.State(state)
		a.Code = -1
		if code.Valid {
			a.Code = int(code.Int64)
		}
		if err := fn(&a); err != nil {
			return err
		}
	}
	return rs.Err()
}

// Move changes every row of batch seq in state from to state to (optionally
// only for one operator, when operator > 0), respecting the transition
// table, while o holds the batch's lease. It returns how many rows moved.
func (l *Store) Move(ctx context.Context, seq int64, o ledger.Owner, from, to ledger.State, operator int64, message string) (int64, error) {
	if !ledger.CanMove(from, to) {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, ledger.ErrTransition)
	}
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	defer tx.Rollback()
	n, err := moveAll(ctx, tx, seq, from, to, operator, message, l.nowMS())
	if err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("move %s rows to %s: %w", from, to, err)
	}
	return n, nil
}

// moveAll is Move inside tx, without the transition table: RecoverInflight
// makes the one move the table does not list (inflight to unknown).
func moveAll(ctx context.Context, tx *sql.Tx, seq int64, from, to ledger.State, operator int64, message string, now int64) (int64, error) {
	// The subquery finds the rows through the state index; a plain
	// "WHERE state = ?" on an UPDATE of state makes SQLite walk the whole
	// batch, seconds on a million rows even when nothing matches.
	q := `UPDATE rows SET state = ?1, message = ?2, updated_ms = ?3
		WHERE batch = ?4 AND line IN (SELECT line FROM rows WHERE batch = ?4 AND state = ?5) AND state = ?5`
	args := []any{string(to), message, now, seq, string(from)}
	if operator > 0 {
		q += ` AND operator = ?6`
		args = append(args, operator)
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// RecoverInflight turns into unknown the rows that runs other than o left
// in flight: those marked inflight, and those of their dispatches still
// queued. Their request may have reached the provider, so only an enquiry
// may settle them. o holds the batch's lease, checked in the same
// transaction (recovering the rows of a run still sending would let two
// processes send them), so every other run is dead; what o itself has in
// flight is left alone. It returns how many rows it moved.
func (l *Store) RecoverInflight(ctx context.Context, seq int64, o ledger.Owner) (ledger.Recovered, error) {
	const why = ledger.RecoveredMessage
	left, err := l.hasDispatches(ctx, seq)
	if err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	defer tx.Rollback()
	now := l.nowMS()
	// The subquery finds the rows through the state index (see moveAll).
	res, err := tx.ExecContext(ctx, `UPDATE rows SET state = 'unknown', message = ?1, updated_ms = ?2
		WHERE batch = ?3 AND line IN (SELECT line FROM rows WHERE batch = ?3 AND state = 'inflight')
			AND state = 'inflight' AND claimed_by IS NOT ?4`, why, now, seq, o.ID)
	if err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	var m int64
	if left { // else the last run ended cleanly
		// They may have been sent: each counts as a send, from when it was
		// dispatched, as a marked row did. The unary + keeps the planner
		// finding each dispatched line by primary key, not walking the
		// queued rows.
		res, err := tx.ExecContext(ctx, `UPDATE rows SET state = 'unknown', message = ?1, updated_ms = ?2,
				attempts = attempts + 1, first_sent_ms = COALESCE(first_sent_ms, x.at)
			FROM (SELECT j.value AS line, max(d.at_ms) AS at FROM dispatches d, json_each(d.lines) j
				WHERE d.batch = ?3 AND d.owner <> ?4 GROUP BY j.value) AS x
			WHERE rows.batch = ?3 AND rows.line = x.line AND +rows.state = 'queued'`,
			why, now, seq, o.ID)
		if err != nil {
			return ledger.Recovered{}, fmt.Errorf("recover dispatched rows: %w", err)
		}
		if m, err = res.RowsAffected(); err != nil {
			return ledger.Recovered{}, fmt.Errorf("recover dispatched rows: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM dispatches WHERE batch = ? AND owner <> ?`, seq, o.ID); err != nil {
			return ledger.Recovered{}, fmt.Errorf("recover dispatched rows: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return ledger.Recovered{}, fmt.Errorf("recover rows in flight: %w", err)
	}
	return ledger.Recovered{Rows: n + m}, nil
}

// querier is what processID needs: the writer's connection pool, or a
// transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// processID returns p's id in the processes table, adding it when new,
// for an attempt's process column: nil (not known) for the zero Process.
func processID(ctx context.Context, q querier, p ledger.Process) (any, error) {
	if p == (ledger.Process{}) {
		return nil, nil
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO processes (host, pid) VALUES (?, ?) ON CONFLICT (host, pid) DO NOTHING`,
		p.Host, p.PID); err != nil {
		return nil, fmt.Errorf("record process %s: %w", p, err)
	}
	var id int64
	if err := q.QueryRowContext(ctx, `SELECT id FROM processes WHERE host = ? AND pid = ?`, p.Host, p.PID).Scan(&id); err != nil {
		return nil, fmt.Errorf("record process %s: %w", p, err)
	}
	return id, nil
}
