package batch

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

// An answer about another payment under the row's referenceid is the
// provider's last word for reconcile, even while that payment is pending:
// asked again, it is the same record, so reconcile must not advise asking
// again (a review: a pending answer of another payment was "open").
func TestConfirmAnotherPaymentIsFinal(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"response_code":1,"status":true,"message":"Transaction Fetched","data":`+
			`{"status":"2","refid":"R1","amount":"250.00","canumber":"CA999"}}`)
	}))
	t.Cleanup(hs.Close)
	client, err := aop.New(aop.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	row := ledger.Row{Line: 2, ReferenceID: "R1", State: ledger.StateFailed, AmountPaise: 1000, CANumber: "CA1"}
	got, err := Confirm(context.Background(), openLedger(t), client, 1, ledger.NewOwner("test"), []ledger.Row{row}, ConfirmOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Answer.Verdict != aop.VerdictPending || got[0].To != "" || !got[0].Final() {
		t.Errorf("Confirm = %+v; want the pending answer of another payment, nothing recorded, final", got)
	}
}
