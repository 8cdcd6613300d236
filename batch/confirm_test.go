package batch

import (
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// What reconcile records from a status enquiry's answer: only what the
// provider confirms of this row's payment, never of another payment under
// the same referenceid, whether or not the answer carries a txnid.
func TestConfirmedState(t *testing.T) {
	row := func(s ledger.State) ledger.Row {
		return ledger.Row{Line: 2, ReferenceID: "R1", State: s, AmountPaise: 1000, CANumber: "CA1"}
	}
	answer := func(v aop.Verdict, amount, ca, txn string) aop.StatusResult {
		return aop.StatusResult{Verdict: v, Data: aop.StatusData{Amount: amount, CANumber: ca, TxnID: txn}}
	}
	for _, tc := range []struct {
		name string
		row  ledger.Row
		st   aop.StatusResult
		want ledger.State
	}{
		{"charged late", row(ledger.StateFailed), answer(aop.VerdictSuccess, "10.00", "CA1", "T1"), ledger.StateSuccess},
		{"charged late, no txnid", row(ledger.StateFailed), answer(aop.VerdictSuccess, "10.00", "CA1", ""), ledger.StateSuccess},
		{"refunded", row(ledger.StateSuccess), answer(aop.VerdictRefunded, "10", "", "T1"), ledger.StateRefunded},
		{"another payment", row(ledger.StateFailed), answer(aop.VerdictSuccess, "250.00", "CA999", "T9"), ""},
		{"another payment, no txnid", row(ledger.StateFailed), answer(aop.VerdictSuccess, "250.00", "CA999", ""), ""},
		{"another canumber, no txnid", row(ledger.StateSuccess), answer(aop.VerdictFailed, "10.00", "CA999", ""), ""},
		{"no record", row(ledger.StateFailed), answer(aop.VerdictNotFound, "", "", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := confirmedState(tc.row, tc.st); got != tc.want {
				t.Errorf("confirmedState = %q (%s), want %q", got, why, tc.want)
			}
		})
	}
}
