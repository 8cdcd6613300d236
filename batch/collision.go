package batch

import (
	"fmt"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// collided settles a row whose status enquiry describes another payment
// (another amount or canumber) under the row's referenceid: the
// referenceid was used elsewhere first (the same --batch name with
// --generate-refs on another ledger, say).
//
// The provider keeps one transaction per referenceid and refuses any
// later request under it (18). Its one transaction under this referenceid
// is not this row's payment, so this row's request, if it reached the
// provider at all, was refused: this row was not paid. What the provider
// charged belongs to whoever sent it first and is never counted for this
// row (its status and txnid are not recorded here). A duplicate or
// unknown row is therefore failed, final, and its message says what a
// person can do: send it again under a new referenceid. Asking again
// would get the same answer forever.
//
// That verdict leads a person to pay the row again, so it needs the
// amount to differ: the provider's amount is what it charged. A canumber
// alone that differs may be the provider masking or reformatting it
// ("XXXXXX4685"), and a pending row was accepted by the provider (code
// 0), so its record should be this row's: both are left as they are for
// a person, with a message saying what to compare.
func (e *Engine) collided(w ledger.Writer, row ledger.Row, d aop.StatusData, why string, a *ledger.Attempt) {
	if (row.State == ledger.StateDuplicate || row.State == ledger.StateUnknown) && amountDiffers(row, d) {
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateFailed, Code: -1, Attempt: a, Message: collisionMessage(row.ReferenceID, why)})
		e.resolved(row, ledger.StateFailed)
		return
	}
	e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Attempt: a,
		Message: fmt.Sprintf("the provider's record under referenceid %s may be another payment (%s): "+
			"ask the provider whether it charged this row before sending anything again", row.ReferenceID, why)})
}

// amountDiffers reports whether the provider's record is for another sum
// than the row's.
func amountDiffers(row ledger.Row, d aop.StatusData) bool {
	if d.Amount == "" {
		return false
	}
	p, err := parseProviderRupees(d.Amount)
	return err == nil && p != row.AmountPaise
}

// collisionMessage is the message of a row failed by a referenceid
// collision.
func collisionMessage(ref, why string) string {
	return fmt.Sprintf("referenceid collision: the provider already holds %s for another payment (%s), so this row was not paid: "+
		"send it again under a new referenceid (aopbatch export --state failed, then run that file under a new --batch)", ref, why)
}
