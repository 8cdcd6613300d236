// Package sqlrow reads batches and rows out of either SQL store: both
// keep them in tables of the same columns, and database/sql and pgx scan
// into the same destinations.
package sqlrow

import (
	"database/sql"
	"encoding/json"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Scanner is a result row: *sql.Row, *sql.Rows, pgx.Row or pgx.Rows.
type Scanner interface{ Scan(...any) error }

// BatchCols are the columns Batch reads, in its order.
const BatchCols = `seq, id, content_hash, source, header, status, rows_total, created_ms, archived`

// Batch reads a batch selected with BatchCols.
func Batch(sc Scanner) (ledger.Batch, error) {
	var b ledger.Batch
	var header, status string
	var created int64
	if err := sc.Scan(&b.Seq, &b.ID, &b.ContentHash, &b.Source, &header, &status, &b.RowsTotal, &created, &b.Archived); err != nil {
		return ledger.Batch{}, err
	}
	_ = json.Unmarshal([]byte(header), &b.Header)
	b.Ready = status == "ready"
	b.Created = time.UnixMilli(created)
	return b, nil
}

// Header is a batch's header as stored: a JSON array, never null.
func Header(h []string) string {
	if h == nil {
		return "[]"
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// RowCols are the columns Row reads, in its order.
const RowCols = `batch, line, referenceid, operator, canumber, amount_paise, request, raw, state, response_code,
	message, error_code, error_column, attempts, provider_txnid, first_sent_ms, updated_ms, retry_of`

// Row reads a row selected with RowCols into r, every field set but
// InFlightSince (zeroed), which the store reads its own way; extra are
// destinations for the columns selected after RowCols.
func Row(sc Scanner, r *ledger.Row, extra ...any) error {
	var (
		raw       sql.NullString
		code      sql.NullInt64
		firstSent sql.NullInt64
		updated   int64
		state     string
		retryOf   sql.NullString
	)
	dest := []any{&r.Batch, &r.Line, &r.ReferenceID, &r.Operator, &r.CANumber, &r.AmountPaise, &r.Request, &raw,
		&state, &code, &r.Message, &r.ErrorCode, &r.ErrorColumn, &r.Attempts, &r.ProviderTxnID, &firstSent, &updated, &retryOf}
	if err := sc.Scan(append(dest, extra...)...); err != nil {
		return err
	}
	r.State = ledger.State(state)
	r.Raw = nil
	if raw.Valid {
		_ = json.Unmarshal([]byte(raw.String), &r.Raw)
	}
	r.ResponseCode = -1
	if code.Valid {
		r.ResponseCode = int(code.Int64)
	}
	r.FirstSent = time.Time{}
	if firstSent.Valid {
		r.FirstSent = time.UnixMilli(firstSent.Int64)
	}
	r.Updated = time.UnixMilli(updated)
	r.RetryOf = retryOf.String
	r.InFlightSince = time.Time{}
	return nil
}

// QueuedCols are the columns Queued reads: what sending a row needs (a
// retry's first payment is checked again before it goes), and
// whether it was ever sent or answered (a row declined for the account,
// 16, is queued again with its code; one held after it was sent keeps its
// sends).
const QueuedCols = `line, referenceid, operator, canumber, amount_paise, request, response_code, attempts, retry_of`

// Queued reads a queued row of batch seq selected with QueuedCols.
func Queued(sc Scanner, seq int64) (ledger.Row, error) {
	r := ledger.Row{Batch: seq, State: ledger.StateQueued, ResponseCode: -1}
	var code sql.NullInt64
	var retryOf sql.NullString
	err := sc.Scan(&r.Line, &r.ReferenceID, &r.Operator, &r.CANumber, &r.AmountPaise, &r.Request, &code, &r.Attempts, &retryOf)
	if code.Valid {
		r.ResponseCode = int(code.Int64)
	}
	r.RetryOf = retryOf.String
	return r, err
}

// Rows is a result set: *sql.Rows or pgx.Rows (the caller closes it).
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// RefHolderCols are the columns RefHolders reads, in its order.
const RefHolderCols = `referenceid, batch, line, state`

// RefHoldersChunk bounds the referenceids one RefHolders query looks up.
const RefHoldersChunk = 1000

// RefHolders reads rows selected with RefHolderCols into out.
func RefHolders(rs Rows, out map[string]ledger.RefHolder) error {
	for rs.Next() {
		var ref string
		var h ledger.RefHolder
		if err := rs.Scan(&ref, &h.Batch, &h.Line, &h.State); err != nil {
			return err
		}
		out[ref] = h
	}
	return rs.Err()
}
