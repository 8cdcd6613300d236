package ledger

import (
	"context"
	"database/sql"
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
	barrier  bool
	line     int
	u        Update
	done     chan error
}

const maxGroup = 1024

// NewWriter starts the writer for batch seq.
func (l *Ledger) NewWriter(ctx context.Context, seq int64) (*Writer, error) {
	w := &Writer{l: l, batch: seq, ops: make(chan *op, 4096), done: make(chan struct{}), moves: map[State]*sql.Stmt{}}
	var err error
	w.inflight, err = l.w.PrepareContext(ctx, `UPDATE rows SET state = 'inflight', attempts = attempts + 1,
		first_sent_ms = COALESCE(first_sent_ms, ?1), updated_ms = ?1
		WHERE batch = ?2 AND line = ?3 AND state IN `+inList(allowedFrom[StateInflight]))
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	w.attempt, err = l.w.PrepareContext(ctx, `INSERT INTO attempts
		(batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("prepare ledger writer: %w", err)
	}
	for to, from := range allowedFrom {
		st, err := l.w.PrepareContext(ctx, `UPDATE rows SET state = ?1,
			response_code = COALESCE(?2, response_code), message = ?3,
			provider_txnid = CASE WHEN ?4 = '' THEN provider_txnid ELSE ?4 END, updated_ms = ?5
			WHERE batch = ?6 AND line = ?7 AND state IN `+inList(from))
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
	o := &op{inflight: true, line: line, done: make(chan error, 1)}
	return w.submitWait(ctx, o)
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
func (w *Writer) apply(group []*op, errs []error) error {
	ctx := context.Background() // a run's end must not abort a commit half-made
	tx, err := w.l.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := w.l.nowMS()
	stmts := map[*sql.Stmt]*sql.Stmt{}
	stmt := func(s *sql.Stmt) *sql.Stmt {
		if t, ok := stmts[s]; ok {
			return t
		}
		t := tx.StmtContext(ctx, s)
		stmts[s] = t
		return t
	}
	for i, o := range group {
		errs[i] = nil
		switch {
		case o.barrier:
			continue
		case o.inflight:
			res, err := stmt(w.inflight).ExecContext(ctx, now, w.batch, o.line)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				errs[i] = fmt.Errorf("mark line %d inflight: %w", o.line, ErrTransition)
			}
		default:
			u := o.u
			logged := u.To
			if u.To == "" {
				logged = StateInflight // an attempt that did not settle the row; a retry follows
			} else {
				st, ok := w.moves[u.To]
				if !ok {
					errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ErrTransition)
					w.noteRejected(errs[i])
					continue
				}
				res, err := stmt(st).ExecContext(ctx, string(u.To), nullCode(u.Code), u.Message, u.TxnID, now, w.batch, u.Line)
				if err != nil {
					return err
				}
				if n, _ := res.RowsAffected(); n != 1 {
					// Not fatal for the group, but never silent: the run
					// reports it through Refused.
					errs[i] = fmt.Errorf("move line %d to %s: %w", u.Line, u.To, ErrTransition)
					w.noteRejected(errs[i])
				}
			}
			if a := u.Attempt; a != nil {
				if _, err := stmt(w.attempt).ExecContext(ctx, w.batch, u.Line, a.Kind, a.At.UnixMilli(), a.Latency.Milliseconds(),
					a.HTTPStatus, nullCode(a.Code), a.Class, string(logged), a.Message); err != nil {
					return err
				}
			}
		}
	}
	return tx.Commit()
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
