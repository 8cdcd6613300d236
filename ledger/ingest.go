package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IngestRow is one data row of a file as the ledger records it. Problem is
// set for a row that failed validation; such a row is stored rejected.
type IngestRow struct {
	Line        int
	ReferenceID string
	Operator    int64
	CANumber    string
	AmountPaise int64
	Request     []byte   // the exact JSON body to send
	Raw         []string // the cells as they were; kept for rows never sent
	Problem     *Problem
}

// Problem says why a row is not sent.
type Problem struct {
	Code    string // machine code, e.g. "bad_amount", "duplicate_referenceid"
	Column  string
	Message string
}

// Ingest adds a file's rows to a batch in chunked transactions. Until
// Finish the batch is not sendable, so an interrupted ingest is simply
// cleared and redone.
type Ingest struct {
	l       *Ledger
	batch   Batch
	owner   Owner
	ttl     time.Duration
	tx      *sql.Tx
	insert  *sql.Stmt
	lookup  *sql.Stmt
	inChunk int
	rows    int64
	done    bool // Finish committed: Abort must leave the batch alone
}

const ingestChunk = 8192

// BeginIngest starts adding rows to batch b, whose lease o holds; each chunk
// commit also renews the lease, since the ingest holds the writer connection.
func (l *Ledger) BeginIngest(ctx context.Context, b Batch, o Owner, ttl time.Duration) (*Ingest, error) {
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
		return fmt.Errorf("ingest batch %s: %w", in.batch.ID, ErrLeaseLost)
	}
	in.insert, err = tx.PrepareContext(ctx, `INSERT INTO rows
		(batch, line, referenceid, operator, canumber, amount_paise, request, raw, state, message, error_code, error_column, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.lookup, err = tx.PrepareContext(ctx, `SELECT b.id, b.seq, r.line, r.amount_paise, r.canumber FROM rows r JOIN batches b ON b.seq = r.batch
		WHERE r.referenceid = ? AND r.state NOT IN ('rejected', 'conflict')`)
	if err != nil {
		tx.Rollback()
		return fmt.Errorf("ingest: %w", err)
	}
	in.tx = tx
	in.inChunk = 0
	return nil
}

// Add records one row and returns the state it was given: queued, rejected
// (invalid, or a referenceid repeated inside this file) or conflict (the
// referenceid belongs to another batch). The message explains the last two.
func (in *Ingest) Add(ctx context.Context, r IngestRow) (State, string, error) {
	now := in.l.nowMS()
	state, msg := StateQueued, ""
	if r.Problem == nil {
		res, err := in.insert.ExecContext(ctx, in.batch.Seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise,
			r.Request, nil, string(StateQueued), "", "", "", now)
		if err != nil {
			return "", "", fmt.Errorf("ingest line %d: %w", r.Line, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return in.counted(ctx, StateQueued, "")
		}
		// The referenceid is taken: by an earlier line of this file, or by
		// another batch.
		var (
			otherID     string
			otherSeq    int64
			otherLine   int
			otherAmount int64
			otherCA     string
		)
		err = in.lookup.QueryRowContext(ctx, r.ReferenceID).Scan(&otherID, &otherSeq, &otherLine, &otherAmount, &otherCA)
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", fmt.Errorf("ingest line %d: line already in batch %s", r.Line, in.batch.ID)
		}
		if err != nil {
			return "", "", fmt.Errorf("ingest line %d: %w", r.Line, err)
		}
		if otherSeq == in.batch.Seq {
			state = StateRejected
			msg = fmt.Sprintf("referenceid repeats line %d of this file", otherLine)
			r.Problem = &Problem{Code: "duplicate_referenceid", Column: "referenceid", Message: msg}
		} else {
			state = StateConflict
			msg = fmt.Sprintf("referenceid already used by batch %s line %d", otherID, otherLine)
			var drift []string
			if otherAmount != r.AmountPaise {
				drift = append(drift, fmt.Sprintf("amount %s there, %s here", rupees(otherAmount), rupees(r.AmountPaise)))
			}
			if otherCA != r.CANumber {
				drift = append(drift, "canumber differs")
			}
			code := "conflict"
			if len(drift) > 0 {
				code = "conflict_drift"
				msg += fmt.Sprintf(" with different details (%s): a different payment under a reused referenceid", strings.Join(drift, ", "))
			}
			r.Problem = &Problem{Code: code, Column: "referenceid", Message: msg}
		}
	} else {
		state, msg = StateRejected, r.Problem.Message
	}
	raw, _ := json.Marshal(r.Raw)
	res, err := in.insert.ExecContext(ctx, in.batch.Seq, r.Line, r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise,
		nil, string(raw), string(state), msg, r.Problem.Code, r.Problem.Column, now)
	if err != nil {
		return "", "", fmt.Errorf("ingest line %d: %w", r.Line, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return "", "", fmt.Errorf("ingest line %d: line already in batch %s", r.Line, in.batch.ID)
	}
	return in.counted(ctx, state, msg)
}

func (in *Ingest) counted(ctx context.Context, s State, msg string) (State, string, error) {
	in.rows++
	in.inChunk++
	if in.inChunk >= ingestChunk {
		if err := in.tx.Commit(); err != nil {
			in.tx = nil
			return "", "", fmt.Errorf("ingest: %w", err)
		}
		if err := in.begin(ctx); err != nil {
			in.tx = nil
			return "", "", err
		}
	}
	return s, msg, nil
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
	return in.l.DeleteBatch(ctx, in.batch.Seq)
}

func rupees(p int64) string {
	sign := ""
	if p < 0 {
		sign, p = "-", -p
	}
	return fmt.Sprintf("%s%d.%02d", sign, p/100, p%100)
}
