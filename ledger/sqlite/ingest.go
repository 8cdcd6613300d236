package sqlite

import (
	"github.com/aopbatch/aopbatch/ledger"

	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Ingest adds a file's rows to a batch in chunked transactions. Until
// Finish the batch is not sendable, so an interrupted ingest is simply
// cleared and redone.
type Ingest struct {
	l       *Store
	batch   ledger.Batch
	owner   ledger.Owner
	ttl     time.Duration
	tx      *sql.Tx
	insert  *sql.Stmt
	insertN *sql.Stmt // addChunk rows at once
	lookup  *sql.Stmt
	retried *sql.Stmt // the sendable row holding a retry_of
	inChunk int
	rows    int64
	done    bool // Finish committed: Abort must leave the batch alone
}

const ingestChunk = 8192

// addChunk is how many sendable rows one insert statement carries: one
// statement per row spends about half its time getting in and out of SQLite.
const addChunk = 128

const (
	rowInsert = `INSERT INTO rows
		(batch, line, referenceid, operator, canumber, amount_paise, request, raw, state, message, error_code, error_column, updated_ms, retry_of)
		VALUES `
	rowValues = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

// BeginIngest starts adding rows to batch b, whose lease o holds; each chunk
// commit also renews the lease, since the ingest holds the writer connection.
func (l *Store) BeginIngest(ctx context.Context, b ledger.Batch, o ledger.Owner, ttl time.Duration) (ledger.Ingest, error) {
	in := &Ingest{l: l, batch: b, owner: o, ttl: ttl}
	if err := in.begin(ctx); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Ingest) begin(ctx context.Context) error {
	tx, err := in.l.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE batches SET lease_expires_ms = ? WHERE seq = ? AND lease_owner = ?`,
		in.l.nowMS()+in.ttl.Milliseconds(), in.batch.Seq, in.owner.ID)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		tx.Rollback()
		return fmt.Errorf("ingest batch %s: %w", in.batch.ID, ledger.ErrLeaseLost)
	}
	in.insert, err = tx.PrepareContext(ctx, rowInsert+rowValues+` ON CONFLICT DO NOTHING`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.insertN, err = tx.PrepareContext(ctx, rowInsert+strings.Repeat(rowValues+", ", addChunk-1)+rowValues+
		` ON CONFLICT DO NOTHING RETURNING line`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.lookup, err = tx.PrepareContext(ctx, `SELECT b.id, b.seq, r.line, r.amount_paise, r.canumber FROM rows r JOIN batches b ON b.seq = r.batch
		WHERE r.referenceid = ? AND r.request IS NOT NULL`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.retried, err = tx.PrepareContext(ctx, `SELECT b.id, b.seq, r.line, r.state FROM rows r JOIN batches b ON b.seq = r.batch
		WHERE r.retry_of = ? AND r.request IS NOT NULL`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.tx = tx
	in.inChunk = 0
	return nil
}

// AddMany records rows, in file order, and returns what each became. Its
// result is the same as adding the rows one by one; sendable rows go in
// with one statement per addChunk rows.
func (in *Ingest) AddMany(ctx context.Context, rows []ledger.IngestRow) ([]ledger.Added, error) {
	out := make([]ledger.Added, len(rows))
	for _, r := range rows {
		// The referenceid index covers exactly the rows with a body: a
		// sendable row without one would escape the never-reuse check.
		if r.Problem == nil && len(r.Request) == 0 {
			return nil, fmt.Errorf("ingest line %d: a sendable row needs its request body", r.Line)
		}
	}
	for start := 0; start < len(rows); {
		n := min(addChunk, len(rows)-start)
		if n < addChunk || !allSendable(rows[start:start+n]) {
			// A short tail or a chunk with a rejected row: one at a time.
			n = 1
			a, err := in.add(ctx, rows[start], false)
			if err != nil {
				return nil, err
			}
			out[start] = a
		} else if err := in.addChunk(ctx, rows[start:start+n], out[start:start+n]); err != nil {
			return nil, err
		}
		if err := in.counted(ctx, n); err != nil {
			return nil, err
		}
		start += n
	}
	return out, nil
}

func allSendable(rows []ledger.IngestRow) bool {
	for _, r := range rows {
		if r.Problem != nil {
			return false
		}
	}
	return true
}

// addChunk inserts addChunk sendable rows in one statement. A row the
// statement skipped holds a referenceid, or retries a row, already taken
// (by an earlier row, possibly of this chunk: rows go in in order) and is
// added on its own, which records why.
func (in *Ingest) addChunk(ctx context.Context, rows []ledger.IngestRow, out []ledger.Added) error {
	now := in.l.nowMS()
	args := make([]any, 0, 14*len(rows))
	for _, r := range rows {
		args = append(args, in.batch.Seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise,
			r.Request, nil, string(ledger.StateQueued), "", "", "", now, nullString(r.RetryOf))
	}
	rs, err := in.insertN.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("ingest lines %d-%d: %w", rows[0].Line, rows[len(rows)-1].Line, err)
	}
	inserted := make(map[int]bool, len(rows))
	for rs.Next() {
		var line int
		if err := rs.Scan(&line); err != nil {
			rs.Close()
			return fmt.Errorf("ingest: %w", err)
		}
		inserted[line] = true
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	for i, r := range rows {
		if inserted[r.Line] {
			out[i] = ledger.Added{State: ledger.StateQueued}
			continue
		}
		a, err := in.add(ctx, r, true)
		if err != nil {
			return err
		}
		out[i] = a
	}
	return nil
}

// add records one row. taken says the row is sendable and its insert was
// already refused because its referenceid, or the row it retries, is held.
func (in *Ingest) add(ctx context.Context, r ledger.IngestRow, taken bool) (ledger.Added, error) {
	now := in.l.nowMS()
	state, msg := ledger.StateQueued, ""
	if r.Problem == nil {
		if !taken {
			res, err := in.insert.ExecContext(ctx, in.batch.Seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise,
				r.Request, nil, string(ledger.StateQueued), "", "", "", now, nullString(r.RetryOf))
			if err != nil {
				return ledger.Added{}, fmt.Errorf("ingest line %d: %w", r.Line, err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return ledger.Added{State: ledger.StateQueued}, nil
			}
		}
		// The referenceid, or the row it retries, is taken: by an earlier
		// line of this file, or by another batch.
		var (
			otherID     string
			otherSeq    int64
			otherLine   int
			otherAmount int64
			otherCA     string
		)
		err := in.lookup.QueryRowContext(ctx, r.ReferenceID).Scan(&otherID, &otherSeq, &otherLine, &otherAmount, &otherCA)
		switch {
		case err == nil && otherSeq == in.batch.Seq:
			state = ledger.StateRejected
			msg = ledger.RepeatsLine(r.Line, r.ReferenceID, otherLine)
			r.Problem = &ledger.Problem{Code: "duplicate_referenceid", Column: "referenceid", Message: msg}
		case err == nil:
			state = ledger.StateConflict
			msg = fmt.Sprintf("referenceid already used by batch %s line %d", otherID, otherLine)
			var drift []string
			if otherAmount != r.AmountPaise {
				drift = append(drift, fmt.Sprintf("amount %s there, %s here", ledger.FormatRupees(otherAmount), ledger.FormatRupees(r.AmountPaise)))
			}
			if otherCA != r.CANumber {
				drift = append(drift, "canumber differs")
			}
			code := "conflict"
			if len(drift) > 0 {
				code = "conflict_drift"
				msg += fmt.Sprintf(" with different details (%s): a different payment under a reused referenceid", strings.Join(drift, ", "))
			}
			r.Problem = &ledger.Problem{Code: code, Column: "referenceid", Message: msg}
		case errors.Is(err, sql.ErrNoRows) && r.RetryOf != "":
			// Not the referenceid: the row it retries is taken.
			var h ledger.RetryHolder
			if err = in.retried.QueryRowContext(ctx, r.RetryOf).Scan(&h.BatchID, &h.Batch, &h.Line, &h.State); err == nil {
				state, r.Problem = ledger.RetryTaken(r, in.batch.Seq, h)
				msg = r.Problem.Message
			}
		}
		if errors.Is(err, sql.ErrNoRows) {
			return ledger.Added{}, fmt.Errorf("ingest line %d: line already in batch %s", r.Line, in.batch.ID)
		}
		if err != nil {
			return ledger.Added{}, fmt.Errorf("ingest line %d: %w", r.Line, err)
		}
	} else {
		state, msg = ledger.StateRejected, r.Problem.Message
	}
	raw, _ := json.Marshal(r.Raw)
	res, err := in.insert.ExecContext(ctx, in.batch.Seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise,
		nil, string(raw), string(state), msg, r.Problem.Code, r.Problem.Column, now, nullString(r.RetryOf))
	if err != nil {
		return ledger.Added{}, fmt.Errorf("ingest line %d: %w", r.Line, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ledger.Added{}, fmt.Errorf("ingest line %d: line already in batch %s", r.Line, in.batch.ID)
	}
	return ledger.Added{State: state, Message: msg}, nil
}

// counted notes n more rows added and commits the chunk when it is full.
func (in *Ingest) counted(ctx context.Context, n int) error {
	in.rows += int64(n)
	in.inChunk += n
	if in.inChunk >= ingestChunk {
		if err := in.tx.Commit(); err != nil {
			in.tx = nil
			return fmt.Errorf("ingest: %w", err)
		}
		if err := in.begin(ctx); err != nil {
			in.tx = nil
			return err
		}
	}
	return nil
}

// Rows is how many rows were added so far.
func (in *Ingest) Rows() int64 { return in.rows }

// Finish commits the last chunk and marks the batch ready to send.
func (in *Ingest) Finish(ctx context.Context) error {
	if in.tx == nil {
		return errors.New("ingest: already finished")
	}
	if _, err := in.tx.ExecContext(ctx, `UPDATE batches SET status = 'ready', rows_total = ? WHERE seq = ?`, in.rows, in.batch.Seq); err != nil {
		in.tx.Rollback()
		in.tx = nil
		return fmt.Errorf("ingest: %w", err)
	}
	err := in.tx.Commit()
	in.tx = nil
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	in.done = true
	return nil
}

// Abort rolls back the open chunk and deletes what earlier chunks wrote, so
// a refused file leaves nothing to send and holds no referenceid. After a
// successful Finish it does nothing, like Rollback after Commit.
func (in *Ingest) Abort(ctx context.Context) error {
	if in.done {
		return nil
	}
	if in.tx != nil {
		in.tx.Rollback()
		in.tx = nil
	}
	return in.l.DeleteBatch(ctx, in.batch.Seq, in.owner)
}
