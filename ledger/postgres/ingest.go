package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aopbatch/aopbatch/ledger"
)

// ingestChunk is how many rows one transaction of an ingest carries; each
// commit renews the ingesting process's lease.
const ingestChunk = 8192

// ingest records a file's rows: each call's rows go through COPY into a
// temporary table on the ingest's own connection, and from there into
// rows in line order, so the referenceid index decides, as it would row
// by row, which row of a repeated referenceid is the sendable one.
type ingest struct {
	s       *Store
	batch   ledger.Batch
	owner   ledger.Owner
	ttl     time.Duration
	conn    *pgxpool.Conn
	tx      pgx.Tx
	inChunk int
	rows    int64
	done    bool
}

// BeginIngest implements ledger.Store.
func (s *Store) BeginIngest(ctx context.Context, b ledger.Batch, o ledger.Owner, ttl time.Duration) (ledger.Ingest, error) {
	// Each call of an ingest is bounded, not the ingest: a transaction of
	// pgx's outlives the context that began it.
	ctx, cancel := s.bound(ctx)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS aopbatch_stage (
		line INTEGER, referenceid TEXT, operator BIGINT, canumber TEXT, amount_paise BIGINT, request BYTEA, retry_of TEXT)`); err != nil {
		conn.Release()
		return nil, fmt.Errorf("ingest: %w", err)
	}
	in := &ingest{s: s, batch: b, owner: o, ttl: ttl, conn: conn}
	if err := in.begin(ctx); err != nil {
		conn.Release()
		return nil, err
	}
	return in, nil
}

// begin starts a chunk's transaction under o's lease, renewing it.
func (in *ingest) begin(ctx context.Context) error {
	tx, err := in.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	// Named for the chunk's length, so that a process taking the batch
	// over can find this connection should this process freeze in the
	// middle of it (see endFrozenIngest).
	if _, err := tx.Exec(ctx, `SELECT set_config('application_name', $1, true)`, ingestAppName(in.owner)); err != nil {
		tx.Rollback(ctx)
		return fmt.Errorf("ingest: %w", err)
	}
	if err := holding(ctx, tx, in.batch.Seq, in.owner); err != nil {
		tx.Rollback(ctx)
		return fmt.Errorf("ingest batch %s: %w", in.batch.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE sessions SET expires_ms = $1 WHERE batch = $2 AND owner = $3`,
		in.s.nowMS()+in.ttl.Milliseconds(), in.batch.Seq, in.owner.ID); err != nil {
		tx.Rollback(ctx)
		return fmt.Errorf("ingest: %w", err)
	}
	in.tx = tx
	in.inChunk = 0
	return nil
}

// AddMany implements ledger.Ingest.
func (in *ingest) AddMany(ctx context.Context, rows []ledger.IngestRow) ([]ledger.Added, error) {
	if in.tx == nil {
		return nil, errors.New("ingest: already finished")
	}
	ctx, cancel := in.s.bound(ctx)
	defer cancel()
	for _, r := range rows {
		// The referenceid index covers exactly the rows with a body: a
		// sendable row without one would escape the never-reuse check.
		if r.Problem == nil && len(r.Request) == 0 {
			return nil, fmt.Errorf("ingest line %d: a sendable row needs its request body", r.Line)
		}
	}
	// The store explains taken referenceids in the rows' Problem: on a
	// copy, not the caller's rows.
	rows = append([]ledger.IngestRow(nil), rows...)
	out := make([]ledger.Added, len(rows))
	// Rows go in in rounds, in line order: a round takes the rows up to
	// the first that repeats a referenceid of the round, which waits for
	// the next. There it finds its referenceid taken, or free when the
	// row before was refused for the row it retries, and whatever a row
	// retries is taken by the first line that retries it: as row by row.
	// (A file without repeated referenceids goes in in one round.)
	conflicts := map[int]bool{}
	var pending []int
	for i, r := range rows {
		if r.Problem == nil {
			pending = append(pending, i)
		}
	}
	for len(pending) > 0 {
		first := map[string]bool{}
		cand, later := pending, []int(nil)
		for k, i := range pending {
			if first[rows[i].ReferenceID] {
				cand, later = pending[:k], pending[k:]
				break
			}
			first[rows[i].ReferenceID] = true
		}
		inserted, err := in.insertQueued(ctx, rows, cand)
		if err != nil {
			return nil, err
		}
		var taken []int
		for _, i := range cand {
			if inserted[rows[i].Line] {
				out[i] = ledger.Added{State: ledger.StateQueued}
			} else {
				taken = append(taken, i)
			}
		}
		if err := in.explainTaken(ctx, rows, taken, conflicts); err != nil {
			return nil, err
		}
		pending = later
	}
	var unsent []int
	for i, r := range rows {
		if r.Problem != nil {
			unsent = append(unsent, i)
			st := ledger.StateRejected
			if conflicts[r.Line] {
				st = ledger.StateConflict
			}
			out[i] = ledger.Added{State: st, Message: r.Problem.Message}
		}
	}
	if err := in.insertUnsent(ctx, rows, unsent, conflicts); err != nil {
		return nil, err
	}
	in.rows += int64(len(rows))
	in.inChunk += len(rows)
	if in.inChunk >= ingestChunk {
		if err := in.tx.Commit(ctx); err != nil {
			in.tx = nil
			return nil, fmt.Errorf("ingest: %w", err)
		}
		in.tx = nil
		if err := in.begin(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// insertQueued stores the candidate rows queued, and returns the lines
// stored: a row left out holds a referenceid, or retries a row, already
// taken.
func (in *ingest) insertQueued(ctx context.Context, rows []ledger.IngestRow, cand []int) (map[int]bool, error) {
	inserted := map[int]bool{}
	if len(cand) == 0 {
		return inserted, nil
	}
	if _, err := in.tx.Exec(ctx, `TRUNCATE aopbatch_stage`); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	src := make([][]any, len(cand))
	for k, i := range cand {
		r := rows[i]
		src[k] = []any{int32(r.Line), r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise, r.Request, nullString(r.RetryOf)}
	}
	if _, err := in.tx.CopyFrom(ctx, pgx.Identifier{"aopbatch_stage"},
		[]string{"line", "referenceid", "operator", "canumber", "amount_paise", "request", "retry_of"}, pgx.CopyFromRows(src)); err != nil {
		return nil, fmt.Errorf("ingest lines %d-%d: %w", rows[cand[0]].Line, rows[cand[len(cand)-1]].Line, err)
	}
	rs, err := in.tx.Query(ctx, `INSERT INTO rows (batch, line, referenceid, operator, canumber, amount_paise, request, state, updated_ms, retry_of)
		SELECT $1, line, referenceid, operator, canumber, amount_paise, request, 'queued', $2, retry_of FROM aopbatch_stage ORDER BY line
		ON CONFLICT DO NOTHING RETURNING line`, in.batch.Seq, in.s.nowMS())
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var line int
		if err := rs.Scan(&line); err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		inserted[line] = true
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return inserted, nil
}

// explainTaken gives each sendable row whose insert was refused its
// problem: a referenceid, or a row to retry, that an earlier line of this
// file holds (rejected) or another batch does (conflict, noted in
// conflicts).
func (in *ingest) explainTaken(ctx context.Context, rows []ledger.IngestRow, taken []int, conflicts map[int]bool) error {
	if len(taken) == 0 {
		return nil
	}
	refs := make([]string, len(taken))
	var retries []string
	for k, i := range taken {
		refs[k] = rows[i].ReferenceID
		if rows[i].RetryOf != "" {
			retries = append(retries, rows[i].RetryOf)
		}
	}
	type holder struct {
		id     string
		seq    int64
		line   int
		amount int64
		ca     string
	}
	holders := map[string]holder{}
	rs, err := in.tx.Query(ctx, `SELECT r.referenceid, b.id, b.seq, r.line, r.amount_paise, r.canumber
		FROM rows r JOIN batches b ON b.seq = r.batch WHERE r.request IS NOT NULL AND r.referenceid = ANY($1)`, refs)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	for rs.Next() {
		var ref string
		var h holder
		if err := rs.Scan(&ref, &h.id, &h.seq, &h.line, &h.amount, &h.ca); err != nil {
			rs.Close()
			return fmt.Errorf("ingest: %w", err)
		}
		holders[ref] = h
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	retried := map[string]ledger.RetryHolder{}
	if len(retries) > 0 {
		rs, err := in.tx.Query(ctx, `SELECT r.retry_of, b.id, b.seq, r.line, r.state
			FROM rows r JOIN batches b ON b.seq = r.batch WHERE r.request IS NOT NULL AND r.retry_of = ANY($1)`, retries)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		for rs.Next() {
			var of string
			var h ledger.RetryHolder
			if err := rs.Scan(&of, &h.BatchID, &h.Batch, &h.Line, &h.State); err != nil {
				rs.Close()
				return fmt.Errorf("ingest: %w", err)
			}
			retried[of] = h
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	for _, i := range taken {
		r := &rows[i]
		h, ok := holders[r.ReferenceID]
		if !ok {
			rh, ok := retried[r.RetryOf]
			if r.RetryOf == "" || !ok {
				return fmt.Errorf("ingest line %d: line already in batch %s", r.Line, in.batch.ID)
			}
			var st ledger.State
			st, r.Problem = ledger.RetryTaken(*r, in.batch.Seq, rh)
			conflicts[r.Line] = st == ledger.StateConflict
			continue
		}
		if h.seq == in.batch.Seq {
			msg := ledger.RepeatsLine(r.Line, r.ReferenceID, h.line)
			r.Problem = &ledger.Problem{Code: "duplicate_referenceid", Column: "referenceid", Message: msg}
			continue
		}
		msg := fmt.Sprintf("referenceid already used by batch %s line %d", h.id, h.line)
		var drift []string
		if h.amount != r.AmountPaise {
			drift = append(drift, fmt.Sprintf("amount %s there, %s here", ledger.FormatRupees(h.amount), ledger.FormatRupees(r.AmountPaise)))
		}
		if h.ca != r.CANumber {
			drift = append(drift, "canumber differs")
		}
		code := "conflict"
		if len(drift) > 0 {
			code = "conflict_drift"
			msg += fmt.Sprintf(" with different details (%s): a different payment under a reused referenceid", strings.Join(drift, ", "))
		}
		r.Problem = &ledger.Problem{Code: code, Column: "referenceid", Message: msg}
		conflicts[r.Line] = true
	}
	return nil
}

// insertUnsent stores rows that are never sent (rejected, conflict) with
// their cells and the reason. A line already in the batch is an error.
func (in *ingest) insertUnsent(ctx context.Context, rows []ledger.IngestRow, idx []int, conflicts map[int]bool) error {
	if len(idx) == 0 {
		return nil
	}
	n := len(idx)
	var (
		lines                          = make([]int32, n)
		refs, cas, states, msgs, codes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		cols, raws                     = make([]string, n), make([]string, n)
		ops, amounts                   = make([]int64, n), make([]int64, n)
		retries                        = make([]*string, n)
	)
	for k, i := range idx {
		r := rows[i]
		raw, _ := json.Marshal(r.Raw)
		st := ledger.StateRejected
		if conflicts[r.Line] {
			st = ledger.StateConflict
		}
		lines[k], refs[k], ops[k], cas[k], amounts[k] = int32(r.Line), r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise
		raws[k], states[k], msgs[k], codes[k], cols[k] = string(raw), string(st), r.Problem.Message, r.Problem.Code, r.Problem.Column
		if r.RetryOf != "" {
			retries[k] = &rows[i].RetryOf
		}
	}
	_, err := in.tx.Exec(ctx, `INSERT INTO rows (batch, line, referenceid, operator, canumber, amount_paise, raw, state,
			message, error_code, error_column, updated_ms, retry_of)
		SELECT $1, u.line, u.ref, u.op, u.ca, u.amount, u.raw, u.state, u.msg, u.code, u.col, $2, u.retry_of
		FROM unnest($3::int[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
			AS u(line, ref, op, ca, amount, raw, state, msg, code, col, retry_of)`,
		in.batch.Seq, in.s.nowMS(), lines, refs, ops, cas, amounts, raws, states, msgs, codes, cols, retries)
	if isUniqueViolation(err) {
		return fmt.Errorf("ingest lines %d-%d: a line already in batch %s", lines[0], lines[n-1], in.batch.ID)
	}
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// Rows implements ledger.Ingest.
func (in *ingest) Rows() int64 { return in.rows }

// Finish implements ledger.Ingest.
func (in *ingest) Finish(ctx context.Context) error {
	if in.tx == nil {
		return errors.New("ingest: already finished")
	}
	ctx, cancel := in.s.bound(ctx)
	defer cancel()
	defer in.release()
	if _, err := in.tx.Exec(ctx, `UPDATE batches SET status = 'ready', rows_total = $1, ingest_owner = NULL WHERE seq = $2`,
		in.rows, in.batch.Seq); err != nil {
		in.tx.Rollback(ctx)
		in.tx = nil
		return fmt.Errorf("ingest: %w", err)
	}
	err := in.tx.Commit(ctx)
	in.tx = nil
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	in.done = true
	return nil
}

// Abort implements ledger.Ingest.
func (in *ingest) Abort(ctx context.Context) error {
	if in.done {
		return nil
	}
	// One bound for the whole, its delete's included: an abort follows a
	// failure, often the server's, and the next run clears what is left.
	ctx, cancel := in.s.bound(ctx)
	defer cancel()
	if in.tx != nil {
		in.tx.Rollback(ctx)
		in.tx = nil
	}
	in.release()
	return in.s.deleteBatch(ctx, in.batch.Seq, in.owner)
}

func (in *ingest) release() {
	if in.conn != nil {
		in.conn.Release()
		in.conn = nil
	}
}

// nullString stores "" as NULL.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
