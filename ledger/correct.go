package ledger

import (
	"errors"
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
// A row in flight is never corrected: a run is sending it, and its own
// answer settles it.
func CanCorrect(from, to State) bool {
	if from == StateInflight || !slices.Contains(correctable, to) {
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
