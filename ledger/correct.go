package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// A correction records what the provider, asked with a status enquiry,
// says about a row whose recorded outcome a statement disputes (aopbatch
// reconcile, SPEC section 4). It is its own small table, apart from
// allowedFrom: the engine never makes these moves on its own answers, and
// nothing but evidence from the provider may. The statement alone never
// changes the ledger.
//
// corrections lists, for each target state, the final states a row may
// be corrected from, beyond the moves allowedFrom already allows:
//
//   - failed -> success: the row was answered failed (or declined), yet
//     the provider's enquiry says it charged it. Left failed, it would be
//     offered for sending again and paid twice.
//
// A success later refunded (success -> refunded) and an unsettled row the
// enquiry settles (pending, duplicate, unknown -> success, failed,
// refunded, pending) are moves allowedFrom has already; Correct takes
// them too, so reconcile records every answer the same way.
var corrections = map[State][]State{
	StateSuccess: {StateFailed},
}

// correctable are the states a correction may move a row to: outcomes a
// status enquiry reports. Never queued, inflight or held: a correction
// never makes a row sendable.
var correctable = []State{StateSuccess, StateFailed, StateRefunded, StatePending}

// CanCorrect reports whether Correct may move a row from state from to
// state to on the provider's evidence.
func CanCorrect(from, to State) bool {
	if !slices.Contains(correctable, to) {
		return false
	}
	return slices.Contains(corrections[to], from) || CanMove(from, to)
}

// Correction is one row's correction and the evidence for it.
type Correction struct {
	Line  int
	From  State // the state the row must still be in
	To    State
	TxnID string // the provider's transaction id, when it gave one
	// Evidence is the status enquiry that confirmed it: logged in the
	// attempts log (Kind "status") with the row's new state, so the
	// ledger keeps why the row moved.
	Evidence Attempt
	Message  string // the row's new message
}

// ErrNotCorrectable means a correction's move is in neither table.
var ErrNotCorrectable = errors.New("the provider's answer does not allow this correction")

// Correct applies c to a row of batch seq while o holds the batch's lease,
// in one transaction with its evidence. The row must still be in c.From:
// a row that moved meanwhile is left alone (ErrTransition).
func (l *Ledger) Correct(ctx context.Context, seq int64, o Owner, c Correction) error {
	if !CanCorrect(c.From, c.To) {
		return fmt.Errorf("correct line %d from %s to %s: %w", c.Line, c.From, c.To, ErrNotCorrectable)
	}
	tx, err := l.beginHolding(ctx, seq, o)
	if err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	defer tx.Rollback()
	now := l.nowMS()
	res, err := tx.ExecContext(ctx, `UPDATE rows SET state = ?1, message = ?2,
			provider_txnid = CASE WHEN ?3 = '' THEN provider_txnid ELSE ?3 END, updated_ms = ?4
		WHERE batch = ?5 AND line = ?6 AND state = ?7 AND request IS NOT NULL`,
		string(c.To), c.Message, c.TxnID, now, seq, c.Line, string(c.From))
	if err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("correct line %d: not %s any more: %w", c.Line, c.From, ErrTransition)
	}
	a := c.Evidence
	if a.Kind == "" {
		a.Kind = "status"
	}
	at := a.At.UnixMilli()
	if a.At.IsZero() {
		at = now
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO attempts
		(batch, line, kind, at_ms, latency_ms, http_status, response_code, class, state, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, c.Line, a.Kind, at, a.Latency.Milliseconds(), a.HTTPStatus, nullCode(a.Code), a.Class, string(c.To), a.Message); err != nil {
		return fmt.Errorf("correct line %d: log evidence: %w", c.Line, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("correct line %d: %w", c.Line, err)
	}
	return nil
}
