package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/groupcommit"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// writer is a run's single writer: row changes from many workers go to
// the database in group commits (groupcommit.Queue), each group one
// transaction whose statements travel in one round trip (a pgx batch), in
// the order they were made.
type writer struct {
	*groupcommit.Queue
	s     *Store
	batch int64
	owner ledger.Owner
	// process is the owner's id in the processes table, logged with each
	// attempt (nil: an owner that names no process).
	process *int64
}

// A group of recorded outcomes smaller than 256 waits up to 10 ms for
// more before its commit.
var limits = groupcommit.Limits{Max: 1024, Linger: 256, LingerFor: 10 * time.Millisecond}

// NewWriter implements ledger.Store.
func (s *Store) NewWriter(ctx context.Context, seq int64, o ledger.Owner) (ledger.Writer, error) {
	w := &writer{s: s, batch: seq, owner: o}
	// Looked up once: each attempt then carries an integer, not the host.
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var err error
	if w.process, err = processID(ctx, s.pool, o.Process()); err != nil {
		return nil, fmt.Errorf("start ledger writer: %w", err)
	}
	w.Queue = groupcommit.Start(limits, w.apply)
	return w, nil
}

// Close implements ledger.Writer. Rows the writer still has in flight stay
// claimed by its owner; once the owner's session ends they are recovered.
func (w *writer) Close() error {
	w.Stop()
	return w.Err()
}

// The statements of a group. A row in flight moves only for the session
// that claimed it; a row dispatched counts as a send once it has an
// outcome (not when it goes back to queued or held: it never left). A
// move with IfSends ($12) checks the row's sends, which a dispatched row
// has not counted yet.
const (
	stmtDispatch = `UPDATE rows SET state = 'inflight', claimed_by = $3, claim = 'dispatch', claimed_ms = $4
		WHERE batch = $1 AND line = ANY($2) AND state = 'queued' RETURNING line`
	stmtMark = `UPDATE rows SET state = 'inflight', claimed_by = $3, claim = 'mark', claimed_ms = $4,
			attempts = attempts + 1, first_sent_ms = COALESCE(first_sent_ms, $4), updated_ms = $4
		WHERE batch = $1 AND line = $2 AND state = ANY($5) AND attempts = $6 RETURNING line`
	stmtMove = `UPDATE rows SET state = $1, response_code = COALESCE($2, response_code), message = $3,
			provider_txnid = CASE WHEN $4 = '' THEN provider_txnid ELSE $4 END, updated_ms = $5,
			attempts = attempts + CASE WHEN state = 'inflight' AND claim = 'dispatch' AND $11 THEN 1 ELSE 0 END,
			first_sent_ms = CASE WHEN state = 'inflight' AND claim = 'dispatch' AND $11 THEN COALESCE(first_sent_ms, $8) ELSE first_sent_ms END,
			claimed_by = NULL, claim = NULL, claimed_ms = NULL
		WHERE batch = $6 AND line = $7 AND state = ANY($9) AND (state <> 'inflight' OR claimed_by = $10)
			AND ($12::int IS NULL OR (attempts = $12 AND claim IS DISTINCT FROM 'dispatch'))`
	// An attempt's state is the row's new state; '' the row's state once
	// the group's moves ran (the attempt of a move another process's
	// change refused: it settled the row first, or sent it again).
	// $11 is the writer's process, the same for every attempt.
	stmtAttempts = `INSERT INTO attempts (batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message, process)
		SELECT $1, u.line, u.kind, u.at, u.lat, u.http, u.code, u.class,
			CASE WHEN u.state <> '' THEN u.state ELSE (SELECT r.state FROM rows r WHERE r.batch = $1 AND r.line = u.line) END, u.msg, $11::bigint
		FROM unnest($2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::int[], $7::int[], $8::text[], $9::text[], $10::text[])
			WITH ORDINALITY AS u(line, kind, at, lat, http, code, class, state, msg, n)
		ORDER BY u.n`
)

// markFrom are the states a row may be marked in flight from.
var markFrom = states(ledger.From(ledger.StateInflight))

func states(ss []ledger.State) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// writeTimeout bounds one group's transaction: a database that stops
// answering fails the writer (and stops the run) instead of hanging it.
// A commit whose fate is unknown is safe: rows go in flight in their own
// commit before anything is sent, and a row left in flight is settled by
// enquiry.
const writeTimeout = time.Minute

// maxRetries is how often a group that PostgreSQL chose as a deadlock or
// serialization victim runs again before the writer fails.
const maxRetries = 5

// apply runs one group in one transaction, under the owner's lease. A row
// whose state forbids its change gets ErrTransition without failing the
// group; a database error fails the group (and the writer).
//
// Processes sharing a batch may change the same rows at once (each
// settles every unsettled row at the end). Each group therefore changes
// its rows in order of line, so two groups wait on each other's rows in
// one order and never in a cycle; a group PostgreSQL still picks as a
// deadlock victim (a takeover, a correction) runs again whole.
func (w *writer) apply(group []*groupcommit.Op, errs []error) error {
	ordered := byLine(group)
	var rejected []error
	err := retrying(func() error {
		rejected = rejected[:0]
		return w.applyOnce(ordered, group, errs, &rejected)
	})
	if err == nil {
		for _, r := range rejected {
			w.NoteRejected(r)
		}
	}
	return err
}

// retrying runs tx, a whole transaction, again while PostgreSQL rolls it
// back as a deadlock victim or a serialization failure (retryable), up to
// maxRetries times, after a random while that grows with each try, so the
// two sides of a deadlock do not meet again in step.
func retrying(tx func() error) error {
	for try := 0; ; try++ {
		err := tx()
		if err == nil || !retryable(err) || try == maxRetries {
			return err
		}
		time.Sleep(time.Duration(10+rand.IntN(40*(try+1))) * time.Millisecond)
	}
}

// retryable reports whether err is PostgreSQL's deadlock_detected or
// serialization_failure: the transaction was rolled back whole and may
// simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// byLine returns the group's ops in order of the first line each changes,
// ops on one line keeping their order. A dispatch names many lines; if one
// of them is also changed by another op of the group, the group keeps the
// order it was made in (rare: the retry covers it).
func byLine(group []*groupcommit.Op) []*groupcommit.Op {
	first := func(o *groupcommit.Op) int {
		switch {
		case o.Barrier:
			return -1
		case o.Dispatch || o.Inflight:
			return slices.Min(append([]int{math.MaxInt}, o.Lines...))
		default:
			return o.Update.Line
		}
	}
	if overlapsDispatch(group) {
		return group
	}
	out := slices.Clone(group)
	slices.SortStableFunc(out, func(a, b *groupcommit.Op) int { return cmp.Compare(first(a), first(b)) })
	return out
}

// overlapsDispatch reports whether a line of a dispatch in group is also
// changed by another op of group.
func overlapsDispatch(group []*groupcommit.Op) bool {
	var dispatched map[int]bool
	for _, o := range group {
		if o.Dispatch {
			if dispatched == nil {
				dispatched = make(map[int]bool)
			}
			for _, l := range o.Lines {
				if dispatched[l] {
					return true
				}
				dispatched[l] = true
			}
		}
	}
	if dispatched == nil {
		return false
	}
	for _, o := range group {
		switch {
		case o.Dispatch || o.Barrier:
		case o.Inflight:
			if dispatched[o.Lines[0]] {
				return true
			}
		default:
			if dispatched[o.Update.Line] {
				return true
			}
		}
	}
	return false
}

// applyOnce is one try of apply: ops in the order to run them, errs by
// position in group. Refusals go to rejected, noted once the group commits.
func (w *writer) applyOnce(ops, group []*groupcommit.Op, errs []error, rejected *[]error) error {
	// A run's end must not abort a commit half-made: the context is the
	// writer's own, bounded only by writeTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	tx, err := w.s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	pos := make(map[*groupcommit.Op]int, len(group))
	for i, o := range group {
		pos[o] = i
		errs[i] = nil
	}
	now := w.s.nowMS()
	b := &pgx.Batch{}
	// The session check comes first; without the session the batch stops
	// there and the transaction is rolled back.
	b.Queue(`SELECT 1 FROM sessions WHERE batch = $1 AND owner = $2 FOR KEY SHARE`, w.batch, w.owner.ID).Fn = func(br pgx.BatchResults) error {
		var one int
		err := br.QueryRow().Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("batch %d: %w", w.batch, ledger.ErrLeaseLost)
		}
		return err
	}
	var moot []int // the attempts (by index) of moves refused
	var (
		aLine                       []int32
		aKind, aClass, aState, aMsg []string
		aAt, aLat                   []int64
		aHTTP                       []int32
		aCode                       []*int32
	)
	for _, o := range ops {
		i := pos[o]
		switch {
		case o.Barrier:
		case o.Dispatch:
			o.Marked = o.Marked[:0]
			b.Queue(stmtDispatch, w.batch, o.Lines, w.owner.ID, now).Fn = func(br pgx.BatchResults) error {
				rows, err := br.Query()
				if err != nil {
					return err
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
				if err != nil {
					return err
				}
				for _, l := range o.Lines {
					if slices.Contains(got, int32(l)) {
						o.Marked = append(o.Marked, l)
					}
				}
				return nil
			}
		case o.Inflight:
			o.Marked = o.Marked[:0]
			b.Queue(stmtMark, w.batch, o.Lines[0], w.owner.ID, now, markFrom, o.Sends).Fn = func(br pgx.BatchResults) error {
				rows, err := br.Query()
				if err != nil {
					return err
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
				if err != nil {
					return err
				}
				if len(got) == 1 {
					o.Marked = append(o.Marked, o.Lines[0])
				}
				return nil
			}
		default:
			u := o.Update
			logged := u.To
			if u.To == "" {
				logged = cmp.Or(u.LogAs, ledger.StateInflight) // an attempt that did not settle the row
			} else if from := ledger.From(u.To); len(from) == 0 || u.To == ledger.StateInflight {
				// Rows go in flight only through Dispatch and MarkInflight,
				// which name their claim.
				errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ledger.ErrTransition)
				*rejected = append(*rejected, errs[i])
				continue
			} else {
				sentAt := now
				if u.Attempt != nil {
					sentAt = u.Attempt.At.UnixMilli()
				}
				sent := u.To != ledger.StateQueued && u.To != ledger.StateHeld
				k := len(aLine) // its attempt's index, when it has one
				b.Queue(stmtMove, string(u.To), nullCode(u.Code), u.Message, u.TxnID, now, w.batch, u.Line, sentAt,
					states(from), w.owner.ID, sent, u.IfSends).Fn = func(br pgx.BatchResults) error {
					tag, err := br.Exec()
					if err != nil {
						return err
					}
					if tag.RowsAffected() != 1 {
						errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ledger.ErrTransition)
						*rejected = append(*rejected, errs[i])
						if u.Attempt != nil {
							moot = append(moot, k)
						}
					}
					return nil
				}
			}
			if a := u.Attempt; a != nil {
				aLine = append(aLine, int32(u.Line))
				aKind = append(aKind, a.Kind)
				aAt = append(aAt, a.At.UnixMilli())
				aLat = append(aLat, a.Latency.Milliseconds())
				aHTTP = append(aHTTP, int32(a.HTTPStatus))
				aCode = append(aCode, nullCode32(a.Code))
				aClass = append(aClass, a.Class)
				aState = append(aState, string(logged))
				aMsg = append(aMsg, a.Message)
			}
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	// The attempts after the moves, a round trip later: by then the moves
	// refused are known, and only their attempts read the row's state.
	if len(aLine) > 0 {
		for _, k := range moot {
			aState[k] = ""
		}
		if _, err := tx.Exec(ctx, stmtAttempts, w.batch, aLine, aKind, aAt, aLat, aHTTP, aCode, aClass, aState, aMsg, w.process); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func nullCode(c int) any {
	if c < 0 {
		return nil
	}
	return c
}

func nullCode32(c int) *int32 {
	if c < 0 {
		return nil
	}
	v := int32(c)
	return &v
}

// Claim implements ledger.Claimer: FOR UPDATE SKIP LOCKED lets processes
// claiming at the same moment each take rows the others did not, and the
// claim commits, under the owner's session, before it returns.
func (w *writer) Claim(ctx context.Context, n int) ([]ledger.Row, error) {
	if err := w.Err(); err != nil {
		return nil, err
	}
	// Claimed and committed, the answer lost to the timeout: the rows
	// stay this session's, taken over as sent (unknown) once it ends.
	ctx, cancel := w.s.bound(ctx)
	defer cancel()
	tx, err := w.s.beginHolding(ctx, w.batch, w.owner)
	if err != nil {
		return nil, w.failUnlessCanceled(ctx, err)
	}
	defer tx.Rollback(ctx)
	// The pick is a CTE, run once: as an IN subquery the planner may run
	// it again for each row it updates, claiming far more than n.
	rs, err := tx.Query(ctx, `WITH picked AS (SELECT line FROM rows WHERE batch = $1 AND state = 'queued'
			ORDER BY line LIMIT $2 FOR UPDATE SKIP LOCKED)
		UPDATE rows SET state = 'inflight', claimed_by = $3, claim = 'dispatch', claimed_ms = $4
		FROM picked WHERE rows.batch = $1 AND rows.line = picked.line
		RETURNING rows.line, rows.referenceid, rows.operator, rows.canumber, rows.amount_paise, rows.request, rows.response_code, rows.attempts, rows.retry_of`, w.batch, n, w.owner.ID, w.s.nowMS())
	if err != nil {
		return nil, w.failUnlessCanceled(ctx, err)
	}
	var out []ledger.Row
	for rs.Next() {
		r, err := sqlrow.Queued(rs, w.batch)
		if err != nil {
			rs.Close()
			return nil, w.failUnlessCanceled(ctx, err)
		}
		out = append(out, r)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, w.failUnlessCanceled(ctx, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, w.failUnlessCanceled(ctx, err)
	}
	slices.SortFunc(out, func(a, b ledger.Row) int { return a.Line - b.Line })
	return out, nil
}

var _ ledger.Claimer = (*writer)(nil)

// failUnlessCanceled is fail, but for the caller's own cancellation: a
// claim interrupted before it committed leaves the writer usable.
func (w *writer) failUnlessCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return w.Fail(err)
}
