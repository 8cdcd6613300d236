package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/internal/sqlrow"
)

// batchImport copies one batch in from another ledger, with COPY. The
// batch exists, not ready, under a session of the import's own from the
// start, so no process sends or clears it half copied.
type batchImport struct {
	s     *Store
	b     ledger.Batch
	seq   int64
	owner ledger.Owner
	done  bool
	// replacing: the batch was left not ready by a copy cut short, and is
	// written again over its rows (takeCutShort).
	replacing bool
	// attemptsGone: the attempts the cut-short copy brought were deleted,
	// with the first attempts of this one (or at Finish, when it has
	// none): until then they stay beside the rows they explain.
	attemptsGone bool
}

// dropAttempts deletes, inside tx, the attempts a cut-short copy left,
// once, when this copy is replacing it.
func (im *batchImport) dropAttempts(ctx context.Context, tx pgx.Tx) error {
	if !im.replacing || im.attemptsGone {
		return nil
	}
	_, err := tx.Exec(ctx, `DELETE FROM attempts WHERE batch = $1`, im.seq)
	return err
}

// importLease is how long an import's session lasts, renewed by each call.
const importLease = 10 * 60 * 1000 // ms

// ImportBatch implements ledger.Store.
func (s *Store) ImportBatch(ctx context.Context, b ledger.Batch) (ledger.BatchImport, error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	o := ledger.NewOwner("import-" + hex.EncodeToString(id))
	header := sqlrow.Header(b.Header)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	defer tx.Rollback(ctx)
	seq, replacing, err := s.takeCutShort(ctx, tx, b, o)
	if err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	if !replacing {
		err = tx.QueryRow(ctx, `INSERT INTO batches (id, content_hash, source, header, status, created_ms, ingest_owner, archived)
			VALUES ($1, $2, $3, $4, 'ingesting', $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING seq`,
			b.ID, b.ContentHash, b.Source, header, b.Created.UnixMilli(), o.ID, b.Archived).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("import batch %s: %w", b.ID, ledger.ErrBatchExists)
		}
		if err != nil {
			return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (batch, owner, host, pid, expires_ms) VALUES ($1, $2, $3, $4, $5)`,
		seq, o.ID, o.Host, o.PID, s.nowMS()+importLease); err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("import batch %s: %w", b.ID, err)
	}
	return &batchImport{s: s, b: b, seq: seq, owner: o, replacing: replacing}, nil
}

// takeCutShort takes over, inside tx, a batch b.ID never made ready (an
// earlier copy of the same batch cut short, or a recording of its file
// abandoned) that no live session holds, for the copy to write again: its
// dead sessions go, each of its rows is replaced as the copy brings the
// same line (Rows), in one transaction, so that its referenceid is held
// throughout, and its attempts give way to the copy's with the first of
// them (dropAttempts). Nothing of a batch not ready was sent from this
// ledger (no run sends it, and a run of its file refuses to record over
// rows a copy brought), and ledger.Copy has checked that the source holds
// every row of it that was sent. A ready batch, a different file's, or
// one still being written is left, and the insert that follows refuses
// the id.
func (s *Store) takeCutShort(ctx context.Context, tx pgx.Tx, b ledger.Batch, o ledger.Owner) (int64, bool, error) {
	var (
		seq          int64
		status, hash string
		live         bool
	)
	err := tx.QueryRow(ctx, `SELECT seq, status, content_hash,
			EXISTS (SELECT 1 FROM sessions s WHERE s.batch = b.seq AND s.expires_ms >= $2)
		FROM batches b WHERE id = $1 FOR UPDATE`, b.ID, s.nowMS()).Scan(&seq, &status, &hash, &live)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if status == "ready" || hash != b.ContentHash || live {
		return 0, false, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE batch = $1`, seq); err != nil {
		return 0, false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE batches SET source = $1, header = $2, created_ms = $3, archived = $4, rows_total = 0,
			ingest_owner = $5 WHERE seq = $6`,
		b.Source, sqlrow.Header(b.Header), b.Created.UnixMilli(), b.Archived, o.ID, seq); err != nil {
		return 0, false, err
	}
	return seq, true, nil
}

// in runs fn in a transaction under the import's session, renewing it.
func (im *batchImport) in(ctx context.Context, fn func(pgx.Tx) error) error {
	if im.done {
		return fmt.Errorf("import batch %s: already finished", im.b.ID)
	}
	tx, err := im.s.beginHolding(ctx, im.seq, im.owner)
	if err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE sessions SET expires_ms = $1 WHERE batch = $2 AND owner = $3`,
		im.s.nowMS()+importLease, im.seq, im.owner.ID); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	return nil
}

// Rows implements ledger.BatchImport.
func (im *batchImport) Rows(ctx context.Context, rows []ledger.Row) error {
	src := make([][]any, len(rows))
	for i, r := range rows {
		if r.State == ledger.StateInflight {
			return fmt.Errorf("import batch %s line %d: a row in flight is not copied: settle the batch first", im.b.ID, r.Line)
		}
		var raw *string
		if r.Raw != nil {
			js, _ := json.Marshal(r.Raw)
			s := string(js)
			raw = &s
		}
		var first *int64
		if !r.FirstSent.IsZero() {
			ms := r.FirstSent.UnixMilli()
			first = &ms
		}
		src[i] = []any{im.seq, int32(r.Line), r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise, r.StoredRequest(), raw,
			string(r.State), nullCode32(r.ResponseCode), r.Message, r.ErrorCode, r.ErrorColumn, int32(r.Attempts),
			r.ProviderTxnID, first, r.Updated.UnixMilli(), nullString(r.RetryOf)}
	}
	return im.in(ctx, func(tx pgx.Tx) error {
		if im.replacing {
			// The lines as the cut-short copy left them give way to the
			// lines as they are now, in this transaction: their
			// referenceids are never free.
			lines := make([]int32, len(rows))
			for i, r := range rows {
				lines[i] = int32(r.Line)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM rows WHERE batch = $1 AND line = ANY($2)`, im.seq, lines); err != nil {
				return fmt.Errorf("import batch %s: %w", im.b.ID, err)
			}
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"rows"}, []string{"batch", "line", "referenceid", "operator", "canumber",
			"amount_paise", "request", "raw", "state", "response_code", "message", "error_code", "error_column", "attempts",
			"provider_txnid", "first_sent_ms", "updated_ms", "retry_of"}, pgx.CopyFromRows(src))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "rows_referenceid" {
			return fmt.Errorf("import batch %s: a referenceid of it is already in this ledger under another batch (%s)", im.b.ID, pe.Detail)
		}
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "rows_retry_of" {
			return fmt.Errorf("import batch %s: a row it retries is already retried in this ledger by another batch (%s)", im.b.ID, pe.Detail)
		}
		if err != nil {
			return fmt.Errorf("import batch %s: %w", im.b.ID, err)
		}
		return nil
	})
}

// Attempts implements ledger.BatchImport.
func (im *batchImport) Attempts(ctx context.Context, as []ledger.AttemptRow) error {
	err := im.in(ctx, func(tx pgx.Tx) error {
		if err := im.dropAttempts(ctx, tx); err != nil {
			return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
		}
		// A batch's attempts name a few processes: each is looked up once.
		ids := map[ledger.Process]*int64{}
		src := make([][]any, len(as))
		for i, a := range as {
			id, ok := ids[a.Process]
			if !ok {
				var err error
				if id, err = processID(ctx, tx, a.Process); err != nil {
					return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
				}
				ids[a.Process] = id
			}
			src[i] = []any{im.seq, int32(a.Line), a.Kind, a.At.UnixMilli(), a.Latency.Milliseconds(), int32(a.HTTPStatus),
				nullCode32(a.Code), a.Class, string(a.State), a.Message, id}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"attempts"}, []string{"batch", "line", "kind", "at_ms", "latency_ms",
			"http_status", "response_code", "class", "state", "message", "process"}, pgx.CopyFromRows(src)); err != nil {
			return fmt.Errorf("import batch %s attempts: %w", im.b.ID, err)
		}
		return nil
	})
	if err == nil {
		im.attemptsGone = im.replacing
	}
	return err
}

// Finish implements ledger.BatchImport.
func (im *batchImport) Finish(ctx context.Context) error {
	status := "ingesting"
	if im.b.Ready {
		status = "ready"
	}
	err := im.in(ctx, func(tx pgx.Tx) error {
		if err := im.dropAttempts(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE batches SET status = $1, rows_total = $2, ingest_owner = NULL WHERE seq = $3`,
			status, im.b.RowsTotal, im.seq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM sessions WHERE batch = $1 AND owner = $2`, im.seq, im.owner.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("import batch %s: %w", im.b.ID, err)
	}
	im.done = true
	return nil
}

// Abort implements ledger.BatchImport.
func (im *batchImport) Abort(ctx context.Context) error {
	if im.done {
		return nil
	}
	im.done = true
	if im.replacing {
		// Its rows held their referenceids before this copy began, some
		// of them paid: left as they are, not ready, for a copy again.
		return im.s.Release(ctx, im.b.ID, im.owner)
	}
	err := im.s.deleteBatch(ctx, im.seq, im.owner)
	if errors.Is(err, ledger.ErrLeaseLost) {
		return nil
	}
	return err
}
