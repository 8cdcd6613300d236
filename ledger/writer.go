package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Update moves one row to a new state and logs the attempt that caused it.
// An Update with an empty To only logs the attempt.
type Update struct {
	Line    int
	To      State
	Code    int // provider response code; -1 when there was none
	Message string
	TxnID   string   // provider transaction id, when known
	Attempt *Attempt // appended to the attempts log; nil logs nothing
}

// Attempt is one request made for a row.
type Attempt struct {
	Kind       string // "recharge" or "status"
	At         time.Time
	Latency    time.Duration
	HTTPStatus int
	Code       int // -1 when there was none
	Class      string
	Message    string
}

// Writer is the single writer of a run: it applies row changes from many
// workers in group commits (whatever is queued goes into one transaction),
// so durability costs one commit per group, not per row.
type Writer struct {
	l     *Ledger
	batch int64
	ops   chan *op
	done  chan struct{}

	closeOnce sync.Once

	mu       sync.Mutex
	err      error // sticky: once the ledger fails, every later call fails
	rejected error // first update the transition table refused

	inflight *sql.Stmt
	attempt  *sql.Stmt
	moves    map[State]*sql.Stmt
}

type op struct {
	inflight bool
	lines    []int // inflight: the rows to mark
	marked   []int // inflight: the rows marked, set before done is signalled
	barrier  bool
	u        Update
	done     chan error
}

const maxGroup = 1024

// NewWriter starts the writer for batch seq.
func (l *Ledger) NewWriter(ctx context.Context, seq int64) (*Writer, error) {
	w := &Writer{l: l, batch: seq, ops: make(chan *op, 4096), done: make(chan struct{}), moves: map[State]*sql.Stmt{}}
	var err error
	// Each statement takes a whole group's rows as one JSON array: one
	// statement per group instead of one per row is most of the writer's
	// speed. RETURNING names the rows the transition table let through.
	w.inflight, err = l.w.PrepareContext(ctx, `UPDATE rows SET state = 'inflight', attempts = attempts + 1,
		first_sent_ms = COALESCE(first_sent_ms, ?1), updated_ms = ?1
		WHERE batch = ?2 AND line IN (SELECT value FROM json_each(?3)) AND state IN `+inList(allowedFrom[StateInflight])+`
		RETURNING line`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	// One plain insert per attempt: appends are cheap, and cheaper
	// bound directly than unpacked from JSON.
	w.attempt, err = l.w.PrepareContext(ctx, `INSERT INTO attempts
		(batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	for to, from := range allowedFrom {
		// The materialized CTE and the unary + keep the planner walking the
		// group's rows and finding each by primary key; left to itself it
		// scans every row of the batch in the source state instead.
		st, err := l.w.PrepareContext(ctx, `WITH j(l, c, m, t) AS MATERIALIZED
				(SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?3))
			UPDATE rows SET state = ?1, response_code = COALESCE(j.c, rows.response_code), message = j.m,
				provider_txnid = CASE WHEN j.t = '' THEN rows.provider_txnid ELSE j.t END, updated_ms = ?2
			FROM j
			WHERE rows.batch = ?4 AND rows.line = j.l AND +rows.state IN `+inList(from)+`
			RETURNING rows.line`)
		if err != nil {
			return nil, fmt.Errorf("prepare ledger writer: %w", err)
		}
		w.moves[to] = st
	}
	go w.loop()
	return w, nil
}

func inList(states []State) string {
	q := make([]string, len(states))
	for i, s := range states {
		q[i] = "'" + string(s) + "'"
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// MarkInflight durably records that the row is about to be sent and returns
// only once that is committed: a crash after this point leaves the row
// inflight, which the next run treats as unknown, never as unsent.
func (w *Writer) MarkInflight(ctx context.Context, line int) error {
	o := &op{inflight: true, lines: []int{line}, done: make(chan error, 1)}
	if err := w.submitWait(ctx, o); err != nil {
		return err
	}
	if len(o.marked) != 1 {
		return fmt.Errorf("mark line %d inflight: %w", line, ErrTransition)
	}
	return nil
}

// MarkInflightMany marks several rows inflight in one commit and returns
// the lines that were marked (those whose state allowed it). Marking a few
// rows ahead of sending hides the commit's latency; a row marked but never
// sent is safe, since the next run checks it with the provider first, and
// the caller puts it back to queued if it stops before sending.
func (w *Writer) MarkInflightMany(ctx context.Context, lines []int) ([]int, error) {
	o := &op{inflight: true, lines: lines, done: make(chan error, 1)}
	if err := w.submitWait(ctx, o); err != nil {
		return nil, err
	}
	return o.marked, nil
}

// Record queues an update; it is committed with the next group. Errors
// surface from Flush and Close.
func (w *Writer) Record(u Update) error {
	if err := w.sticky(); err != nil {
		return err
	}
	w.ops <- &op{u: u}
	return nil
}

// Flush returns once everything recorded before it is committed.
func (w *Writer) Flush(ctx context.Context) error {
	return w.submitWait(ctx, &op{barrier: true, done: make(chan error, 1)})
}

func (w *Writer) submitWait(ctx context.Context, o *op) error {
	if err := w.sticky(); err != nil {
		return err
	}
	select {
	case w.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the op will be applied: wait for the verdict even if ctx
	// ends, or the caller could act on a row whose state it does not know.
	return <-o.done
}

// Close commits what is queued and stops the writer. It returns the first
// error the writer met. Calling it again (a deferred Close after an
// explicit one) returns the same error instead of panicking.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		close(w.ops)
		<-w.done
		for _, st := range w.moves {
			st.Close()
		}
		w.inflight.Close()
		w.attempt.Close()
	})
	return w.sticky()
}

func (w *Writer) sticky() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) loop() {
	defer close(w.done)
	group := make([]*op, 0, maxGroup)
	errs := make([]error, 0, maxGroup)
	for {
		first, ok := <-w.ops
		if !ok {
			return
		}
		group = append(group[:0], first)
	fill:
		for len(group) < maxGroup {
			select {
			case o, ok := <-w.ops:
				if !ok {
					break fill
				}
				group = append(group, o)
			default:
				break fill
			}
		}
		errs = errs[:cap(errs)][:len(group)]
		err := w.sticky()
		if err == nil {
			err = w.apply(group, errs)
			if err != nil {
				w.mu.Lock()
				w.err = fmt.Errorf("ledger write: %w", err)
				err = w.err
				w.mu.Unlock()
			}
		}
		for i, o := range group {
			if o.done == nil {
				continue
			}
			if err != nil {
				o.done <- err
			} else {
				o.done <- errs[i]
			}
		}
	}
}

// apply runs one group in one transaction. A row whose state forbids its
// change gets ErrTransition without failing the group; a database error
// fails the whole group (and the writer).
//
// Rows are changed in batches, one statement per kind of change. Within a
// segment of the group no row appears twice, so the order of statements
// does not matter; a row's second change starts a new segment, keeping
// each row's changes in the order they were made.
func (w *Writer) apply(group []*op, errs []error) error {
	ctx := context.Background() // a run's end must not abort a commit half-made
	tx, err := w.l.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := w.l.nowMS()
	seg := newSegment()
	var attempts []loggedAttempt
	for i, o := range group {
		errs[i] = nil
		if o.barrier {
			continue
		}
		if o.inflight {
			for _, line := range o.lines {
				if seg.has(line) {
					if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
						return err
					}
					seg = newSegment()
					break
				}
			}
		} else if o.u.To != "" && seg.has(o.u.Line) {
			// A row's second change in this group: keep its order.
			if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
				return err
			}
			seg = newSegment()
		}
		switch {
		case o.inflight:
			o.marked = o.marked[:0]
			for _, line := range o.lines {
				seg.add(line, i)
				seg.inflight = append(seg.inflight, line)
			}
		default:
			u := o.u
			logged := u.To
			if u.To == "" {
				logged = StateInflight // an attempt that did not settle the row; a retry follows
			} else if _, ok := w.moves[u.To]; !ok {
				errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ErrTransition)
				w.noteRejected(errs[i])
				continue
			} else {
				seg.add(u.Line, i)
				seg.moves[u.To] = append(seg.moves[u.To], []any{u.Line, nullCode(u.Code), u.Message, u.TxnID})
			}
			if u.Attempt != nil {
				attempts = append(attempts, loggedAttempt{u.Line, logged, u.Attempt})
			}
		}
	}
	if err := w.flush(ctx, tx, seg, now, group, errs); err != nil {
		return err
	}
	if len(attempts) > 0 {
		st := tx.StmtContext(ctx, w.attempt)
		for _, la := range attempts {
			a := la.a
			if _, err := st.ExecContext(ctx, w.batch, la.line, a.Kind, a.At.UnixMilli(), a.Latency.Milliseconds(),
				a.HTTPStatus, nullCode(a.Code), a.Class, string(la.state), a.Message); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// loggedAttempt is an attempt waiting for its insert, with the state it
// left the row in.
type loggedAttempt struct {
	line  int
	state State
	a     *Attempt
}

// segment collects a group's row changes in which no row appears twice.
type segment struct {
	ops      map[int]int // line -> index of its op in the group
	inflight []int
	moves    map[State][]any
}

func newSegment() *segment { return &segment{ops: map[int]int{}, moves: map[State][]any{}} }

func (s *segment) has(line int) bool { _, ok := s.ops[line]; return ok }

func (s *segment) add(line, op int) { s.ops[line] = op }

// flush applies a segment; rows the transition table refused get
// ErrTransition on their op.
func (w *Writer) flush(ctx context.Context, tx *sql.Tx, seg *segment, now int64, group []*op, errs []error) error {
	if len(seg.inflight) > 0 {
		js, err := json.Marshal(seg.inflight)
		if err != nil {
			return err
		}
		done, err := returnedLines(ctx, tx.StmtContext(ctx, w.inflight), now, w.batch, string(js))
		if err != nil {
			return err
		}
		for _, line := range seg.inflight {
			if o := group[seg.ops[line]]; done[line] {
				o.marked = append(o.marked, line)
			}
		}
	}
	for to, rows := range seg.moves {
		js, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		done, err := returnedLines(ctx, tx.StmtContext(ctx, w.moves[to]), string(to), now, string(js), w.batch)
		if err != nil {
			return err
		}
		for _, r := range rows {
			line := r.([]any)[0].(int)
			if !done[line] {
				// Not fatal for the group, but never silent: the run
				// reports it through Refused.
				i := seg.ops[line]
				errs[i] = fmt.Errorf("move line %d to %s: %w", line, to, ErrTransition)
				w.noteRejected(errs[i])
			}
		}
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

// Refused returns the first recorded update that the transition table
// refused, or nil. Such an update is a bug; the run reports it rather than
// let a row's true outcome go unrecorded in silence.
func (w *Writer) Refused() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rejected
}

// noteRejected keeps the first refused update so Refused can report it.
func (w *Writer) noteRejected(err error) {
	w.mu.Lock()
	if w.rejected == nil {
		w.rejected = err
	}
	w.mu.Unlock()
}

func nullCode(c int) any {
	if c < 0 {
		return nil
	}
	return c
}
