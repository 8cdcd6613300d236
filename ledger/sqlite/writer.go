package sqlite

import (
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/groupcommit"

	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Writer is the single writer of a run: it applies row changes from many
// workers in group commits (whatever is queued goes into one transaction),
// so durability costs one commit per group, not per row.
//
// Every transaction it commits first checks that its owner still holds the
// batch's lease: a run paused past its lease (SIGSTOP, a suspended laptop)
// and taken over by another must not write a row again, or its stale
// outcomes would overwrite the new holder's. Its writes then fail with
// ErrLeaseLost, and the new holder settles what it had in flight.
//
// Dispatch does what MarkInflight does for each row at a fraction of the
// cost: the rows stay queued in the table, recorded as one dispatches row
// for all of them, and a crash leaves them in a dispatch the next run
// turns into unknown (RecoverInflight). Their outcomes are recorded as for
// marked rows, and each may leave queued once. A row dispatched but never
// sent is safe, and the caller records it back to queued (or held) if it
// stops before sending. Close deletes the writer's dispatches once all
// their rows have moved.
type Writer struct {
	*groupcommit.Queue
	l     *Store
	batch int64
	owner ledger.Owner
	// process is the owner's id in the processes table, logged with each
	// attempt (nil: an owner that names no process).
	process any

	closeOnce sync.Once

	inflight *sql.Stmt
	attempt  *sql.Stmt
	attemptN *sql.Stmt // attemptsPerInsert attempts at once
	moves    map[ledger.State]*sql.Stmt
	// movesSent are the moves of a row this writer dispatched: it is still
	// queued in the table, and may leave queued as a marked row leaves
	// inflight.
	movesSent map[ledger.State]*sql.Stmt
	// movesIf are the moves of an Update with IfSends: the row's sends,
	// ?8, must not have changed.
	movesIf       map[ledger.State]*sql.Stmt
	dispatchCheck *sql.Stmt
	dispatchAdd   *sql.Stmt

	// Owned by the loop goroutine: the rows dispatched and not yet moved,
	// and the dispatches rows this writer wrote.
	sent        bitset
	dispatchIDs []int64
}

// A group of recorded outcomes smaller than Linger waits up to LingerFor
// for more before it is committed. Measured on 60k rows against
// the loopback sandbox (2 cores): groups of ~35 rows became ~240 and the
// run took 7.2-8.1 s instead of 9.0-9.5 s; raising the group to 1,024 rows
// and the wait to 20 ms saved another 1-5% of CPU per row on 200k rows
// (three alternating runs). An outcome not yet committed when the process
// dies costs its row a status enquiry, as it would a moment earlier.
var limits = groupcommit.Limits{Max: 2048, Linger: 1024, LingerFor: 20 * time.Millisecond}

// NewWriter starts the writer for batch seq, writing while o holds its
// lease.
func (l *Store) NewWriter(ctx context.Context, seq int64, o ledger.Owner) (ledger.Writer, error) {
	w := &Writer{l: l, batch: seq, owner: o, moves: map[ledger.State]*sql.Stmt{}, movesSent: map[ledger.State]*sql.Stmt{},
		movesIf: map[ledger.State]*sql.Stmt{}}
	var err error
	// Looked up once: each attempt then carries an integer, not the host.
	if w.process, err = processID(ctx, l.w, o.Process()); err != nil {
		return nil, fmt.Errorf("start ledger writer: %w", err)
	}
	// Marks take a group's rows as one JSON array of [line, sends] pairs,
	// one statement for many rows; RETURNING names the rows the transition
	// table let through, among those not sent since the caller read them.
	w.inflight, err = l.w.PrepareContext(ctx, `UPDATE rows SET state = 'inflight', attempts = attempts + 1,
		first_sent_ms = COALESCE(first_sent_ms, ?1), updated_ms = ?1, claimed_by = ?4
		WHERE batch = ?2 AND (line, attempts) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?3))
			AND `+orList("state", ledger.From(ledger.StateInflight))+`
		RETURNING line`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	// Plain inserts, bound directly (cheaper than unpacking JSON), and
	// attemptsPerInsert to a statement where a group has that many: an
	// attempt then costs 4.5 µs instead of 7.
	const attemptCols = `INSERT INTO attempts
		(batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message, process) VALUES `
	const attemptValues = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	if w.attempt, err = l.w.PrepareContext(ctx, attemptCols+attemptValues); err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	if w.attemptN, err = l.w.PrepareContext(ctx, attemptCols+
		strings.Repeat(attemptValues+", ", attemptsPerInsert-1)+attemptValues); err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	// A range of the state index: the chunk's lines are the next queued
	// ones, so the range holds them and little else.
	w.dispatchCheck, err = l.w.PrepareContext(ctx, `SELECT line FROM rows INDEXED BY rows_state
		WHERE batch = ?1 AND state = 'queued' AND line BETWEEN ?2 AND ?3`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	w.dispatchAdd, err = l.w.PrepareContext(ctx, `INSERT INTO dispatches (batch, lines, at_ms, owner) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	for _, to := range ledger.Targets() {
		from := ledger.From(to)
		if w.moves[to], err = l.prepareMove(ctx, to, from, "", ""); err != nil {
			return nil, err
		}
		if w.movesIf[to], err = l.prepareMove(ctx, to, from, "", " AND attempts = ?8"); err != nil {
			return nil, err
		}
		if !slices.Contains(from, ledger.StateInflight) {
			continue // not a move a sent row makes
		}
		// A dispatched row leaves queued as a marked row leaves inflight.
		// It counts as sent once it has an outcome; back to queued or held
		// it never left, and only from queued: a dispatched row in any
		// other state was settled elsewhere, and "never sent" must not
		// overwrite that.
		set := ""
		sentFrom := append([]ledger.State{ledger.StateQueued}, from...)
		if to == ledger.StateQueued || to == ledger.StateHeld {
			sentFrom = []ledger.State{ledger.StateQueued}
		} else { // bound with ?8, see flush
			set = ", attempts = attempts + 1, first_sent_ms = COALESCE(first_sent_ms, ?8)"
		}
		if w.movesSent[to], err = l.prepareMove(ctx, to, sentFrom, set, ""); err != nil {
			return nil, err
		}
	}
	w.Queue = groupcommit.Start(limits, w.apply)
	return w, nil
}

// prepareMove prepares the statement that moves one row to state to from
// any of states from, setting set's columns too, where where holds as
// well. One statement per row,
// bound directly, costs less than unpacking a group's rows from JSON; the
// guard is a chain of comparisons, since SQLite evaluates an IN list of
// more than two names through a temporary table on every execution.
func (l *Store) prepareMove(ctx context.Context, to ledger.State, from []ledger.State, set, where string) (*sql.Stmt, error) {
	st, err := l.w.PrepareContext(ctx, `UPDATE rows SET state = ?1, response_code = COALESCE(?2, response_code),
		message = ?3, provider_txnid = CASE WHEN ?4 = '' THEN provider_txnid ELSE ?4 END, updated_ms = ?5`+set+`
		WHERE batch = ?6 AND line = ?7 AND `+orList("state", from)+where)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: move to %s: %w", to, err)
	}
	return st, nil
}

// orList is "(col = 's1' OR col = 's2' ...)".
func orList(col string, states []ledger.State) string {
	q := make([]string, len(states))
	for i, s := range states {
		q[i] = col + " = '" + string(s) + "'"
	}
	return "(" + strings.Join(q, " OR ") + ")"
}

// Close commits what is queued and stops the writer. It returns the first
// error the writer met. Calling it again (a deferred Close after an
// explicit one) returns the same error instead of panicking.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.Stop()
		if w.Err() == nil && len(w.dispatchIDs) > 0 && w.sent.empty() {
			// Every dispatched row has moved: nothing of these dispatches
			// is left for a next run to check.
			if err := w.deleteDispatches(); err != nil {
				_ = w.Fail(err) // Close returns it below
			}
		}
		for _, m := range []map[ledger.State]*sql.Stmt{w.moves, w.movesSent, w.movesIf} {
			for _, st := range m {
				st.Close()
			}
		}
		w.inflight.Close()
		w.attempt.Close()
		w.attemptN.Close()
		w.dispatchCheck.Close()
		w.dispatchAdd.Close()
	})
	return w.Err()
}

// deleteDispatches deletes the writer's dispatches while its owner holds
// the lease: after a takeover they are the new holder's to recover, and
// their ids may already name its own dispatches.
func (w *Writer) deleteDispatches() error {
	ctx := context.Background()
	tx, err := w.l.beginHolding(ctx, w.batch, w.owner)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ids, err := json.Marshal(w.dispatchIDs)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM dispatches WHERE batch = ? AND id IN (SELECT value FROM json_each(?))`,
		w.batch, string(ids)); err != nil {
		return err
	}
	return tx.Commit()
}

// apply runs one group in one transaction. A row whose state forbids its
// change gets ErrTransition without failing the group; a database error
// fails the whole group (and the writer).
//
// Marks and dispatches are applied a segment at a time, one statement for
// all of a segment's rows, then the segment's moves one by one. Within a
// segment no row appears twice, so this order does not matter; a row's
// second change starts a new segment, keeping each row's changes in the
// order they were made.
func (w *Writer) apply(group []*groupcommit.Op, errs []error) error {
	ctx := context.Background() // a run's end must not abort a commit half-made
	tx, err := w.l.beginHolding(ctx, w.batch, w.owner)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := w.l.nowMS()
	seg := newSegment()
	var attempts []loggedAttempt
	for i, o := range group {
		errs[i] = nil
		if o.Barrier {
			continue
		}
		if o.Inflight || o.Dispatch {
			for _, line := range o.Lines {
				if seg.has(line) {
					if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
						return err
					}
					seg = newSegment()
					break
				}
			}
		} else if o.Update.To != "" && seg.has(o.Update.Line) {
			// A row's second change in this group: keep its order.
			if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
				return err
			}
			seg = newSegment()
		}
		switch {
		case o.Inflight:
			o.Marked = o.Marked[:0]
			for _, line := range o.Lines {
				seg.add(line, i)
				seg.inflight = append(seg.inflight, line)
			}
		case o.Dispatch:
			o.Marked = o.Marked[:0]
			for _, line := range o.Lines {
				seg.add(line, i)
				seg.dispatch = append(seg.dispatch, line)
			}
		default:
			u := o.Update
			logged := u.To
			if u.To == "" {
				logged = cmp.Or(u.LogAs, ledger.StateInflight) // an attempt that did not settle the row
			} else if _, ok := w.moves[u.To]; !ok {
				errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ledger.ErrTransition)
				w.NoteRejected(errs[i])
				continue
			} else if u.IfSends != nil && w.sent.has(u.Line) {
				// A row this writer dispatched stays queued in the table
				// until its outcome, its send not yet counted there: no
				// count to check it by.
				errs[i] = fmt.Errorf("move line %d to %s: dispatched, its sends not counted yet: %w", u.Line, u.To, ledger.ErrTransition)
				w.NoteRejected(errs[i])
				if u.Attempt != nil { // the request was made all the same
					attempts = append(attempts, loggedAttempt{line: u.Line, state: ledger.StateInflight, a: u.Attempt, op: -1})
				}
				continue
			} else {
				seg.add(u.Line, i)
				k := moveKey{to: u.To, sent: w.sent.has(u.Line) && w.movesSent[u.To] != nil, ifSends: u.IfSends != nil}
				seg.moves = append(seg.moves, move{k: k, u: u, op: i})
			}
			if u.Attempt != nil {
				attempts = append(attempts, loggedAttempt{line: u.Line, state: logged, a: u.Attempt, op: i})
			}
		}
	}
	if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
		return err
	}
	for i := range attempts {
		// A move refused (a guarded one, or a bug) did not move the row:
		// its attempt is logged with the row's state, not the move it
		// missed.
		if la := &attempts[i]; la.op >= 0 && errs[la.op] != nil {
			if err := tx.QueryRowContext(ctx, `SELECT state FROM rows WHERE batch = ? AND line = ?`,
				w.batch, la.line).Scan(&la.state); err != nil {
				return err
			}
		}
	}
	if err := w.logAttempts(ctx, tx, attempts); err != nil {
		return err
	}
	return tx.Commit()
}

const attemptsPerInsert = 16

// logAttempts inserts a group's attempts, attemptsPerInsert to a statement
// and the rest one by one.
func (w *Writer) logAttempts(ctx context.Context, tx *sql.Tx, attempts []loggedAttempt) error {
	var many, one *sql.Stmt
	args := make([]any, 0, 11*attemptsPerInsert)
	for len(attempts) > 0 {
		n := 1
		if len(attempts) >= attemptsPerInsert {
			n = attemptsPerInsert
		}
		args = args[:0]
		for _, la := range attempts[:n] {
			a := la.a
			args = append(args, w.batch, la.line, a.Kind, a.At.UnixMilli(), a.Latency.Milliseconds(),
				a.HTTPStatus, nullCode(a.Code), a.Class, string(la.state), a.Message, w.process)
		}
		var st *sql.Stmt
		if n > 1 {
			if many == nil {
				many = tx.StmtContext(ctx, w.attemptN)
			}
			st = many
		} else {
			if one == nil {
				one = tx.StmtContext(ctx, w.attempt)
			}
			st = one
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return err
		}
		attempts = attempts[n:]
	}
	return nil
}

// loggedAttempt is an attempt waiting for its insert, with the state it
// left the row in.
type loggedAttempt struct {
	line  int
	state ledger.State
	a     *ledger.Attempt
	// op is the index in the group of the move it goes with, whose
	// refusal (errs[op]) decides its state; -1 when decided already.
	op int
}

// segment collects a group's row changes in which no row appears twice.
type segment struct {
	ops      map[int]int // line -> index of its op in the group
	inflight []int
	dispatch []int
	moves    []move // in the order they were recorded
}

type move struct {
	k  moveKey
	u  ledger.Update
	op int // index in the group
}

// moveKey sorts a segment's moves by statement: sent marks rows this
// writer dispatched.
type moveKey struct {
	to      ledger.State
	sent    bool
	ifSends bool // checks the row's sends (Update.IfSends)
}

func newSegment() *segment { return &segment{ops: map[int]int{}} }

func (s *segment) has(line int) bool { _, ok := s.ops[line]; return ok }

func (s *segment) add(line, op int) { s.ops[line] = op }

// flush applies a segment; rows the transition table refused get
// ErrTransition on their op.
func (w *Writer) flush(ctx context.Context, tx *sql.Tx, seg *segment, now int64, group []*groupcommit.Op, errs []error) error {
	if len(seg.inflight) > 0 {
		pairs := make([][2]int, len(seg.inflight))
		for i, line := range seg.inflight {
			pairs[i] = [2]int{line, group[seg.ops[line]].Sends}
		}
		js, err := json.Marshal(pairs)
		if err != nil {
			return err
		}
		done, err := returnedLines(ctx, tx.StmtContext(ctx, w.inflight), now, w.batch, string(js), w.owner.ID)
		if err != nil {
			return err
		}
		for _, line := range seg.inflight {
			if o := group[seg.ops[line]]; done[line] {
				o.Marked = append(o.Marked, line)
			}
		}
	}
	if len(seg.dispatch) > 0 {
		if err := w.dispatch(ctx, tx, seg, now, group); err != nil {
			return err
		}
	}
	stmts := map[moveKey]*sql.Stmt{}
	args := make([]any, 0, 8) // reused: ExecContext keeps none of it
	for _, m := range seg.moves {
		st := stmts[m.k]
		if st == nil {
			switch {
			case m.k.ifSends:
				st = tx.StmtContext(ctx, w.movesIf[m.k.to])
			case m.k.sent:
				st = tx.StmtContext(ctx, w.movesSent[m.k.to])
			default:
				st = tx.StmtContext(ctx, w.moves[m.k.to])
			}
			stmts[m.k] = st
		}
		u := m.u
		args = append(args[:0], string(u.To), nullCode(u.Code), u.Message, u.TxnID, now, w.batch, u.Line)
		if m.k.ifSends {
			args = append(args, *u.IfSends)
		}
		if m.k.sent && u.To != ledger.StateQueued && u.To != ledger.StateHeld {
			sentAt := now // when the request went, for first_sent_ms
			if u.Attempt != nil {
				sentAt = u.Attempt.At.UnixMilli()
			}
			args = append(args, sentAt)
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 1 && m.k.sent {
			w.sent.clear(u.Line) // it may leave queued once
		}
		if n != 1 {
			// Not fatal for the group, but never silent: the run reports it
			// through Refused.
			errs[m.op] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ledger.ErrTransition)
			w.NoteRejected(errs[m.op])
		}
	}
	return nil
}

// dispatch records a segment's dispatched rows that are still queued as
// one dispatches row.
func (w *Writer) dispatch(ctx context.Context, tx *sql.Tx, seg *segment, now int64, group []*groupcommit.Op) error {
	lo, hi := slices.Min(seg.dispatch), slices.Max(seg.dispatch)
	queued, err := returnedLines(ctx, tx.StmtContext(ctx, w.dispatchCheck), w.batch, lo, hi)
	if err != nil {
		return err
	}
	lines := make([]int, 0, len(queued))
	for _, line := range seg.dispatch {
		if queued[line] {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	js, err := json.Marshal(lines)
	if err != nil {
		return err
	}
	// apply began this transaction holding the lease: a process that lost the
	// batch to a takeover cannot dispatch rows the new holder may also send.
	res, err := tx.StmtContext(ctx, w.dispatchAdd).ExecContext(ctx, w.batch, string(js), now, w.owner.ID)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	w.dispatchIDs = append(w.dispatchIDs, id)
	for _, line := range lines {
		w.sent.set(line)
		o := group[seg.ops[line]]
		o.Marked = append(o.Marked, line)
	}
	return nil
}

func returnedLines(ctx context.Context, st *sql.Stmt, args ...any) (map[int]bool, error) {
	rs, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	done := map[int]bool{}
	for rs.Next() {
		var line int
		if err := rs.Scan(&line); err != nil {
			return nil, err
		}
		done[line] = true
	}
	return done, rs.Err()
}

func nullCode(c int) any {
	if c < 0 {
		return nil
	}
	return c
}

// bitset is a set of line numbers, 1 bit each: a million-row batch's
// dispatched rows in 125 KB, where a map would take tens of MB.
type bitset []uint64

func (b bitset) has(i int) bool { return i >= 0 && i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0 }

func (b *bitset) set(i int) {
	for i/64 >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[i/64] |= 1 << (i % 64)
}

func (b bitset) clear(i int) {
	if i >= 0 && i/64 < len(b) {
		b[i/64] &^= 1 << (i % 64)
	}
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}
