package batch

import (
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// The outcome table, row by row: what each class of Recharge answer does
// to the row and to the run (SPEC section 2).
func TestRechargeOutcomes(t *testing.T) {
	for _, tc := range []struct {
		res       aop.Result
		state     ledger.State
		retry     RetryReason
		stop      string
		hint      string
		transient bool
	}{
		{aop.Result{Class: aop.ClassSuccess, Code: 1}, ledger.StateSuccess, "", "", "", false},
		{aop.Result{Class: aop.ClassPending, Code: 0}, ledger.StatePending, "", "", "", false},
		{aop.Result{Class: aop.ClassDuplicate, Code: 18}, ledger.StateDuplicate, "", "", "", false},
		{aop.Result{Class: aop.ClassFailed, Code: 14}, ledger.StateFailed, "", "", "", false},
		{aop.Result{Class: aop.ClassOperatorDown, Code: 13}, ledger.StateFailed, "", "", "", false},
		{aop.Result{Class: aop.ClassAccountStop, Code: 16}, ledger.StateQueued, "", StopAccount, "top up the wallet", false},
		{aop.Result{Class: aop.ClassAccountStop, Code: 6}, ledger.StateQueued, "", StopAccount, "commission", false},
		{aop.Result{Class: aop.ClassAccountStop, Code: 12}, ledger.StateQueued, "", StopAccount, "recharge permission", false},
		{aop.Result{Class: aop.ClassAuth, Code: 10}, ledger.StateQueued, "", StopAuth, "AOP_TOKEN", false},
		{aop.Result{Class: aop.ClassUnknown, Code: 9}, ledger.StateUnknown, "", "", "", true},
		{aop.Result{Class: aop.ClassUnknown, Code: -1, HTTPStatus: 502}, ledger.StateUnknown, "", "", "", true},
		{aop.Result{Class: "something new"}, ledger.StateUnknown, "", "", "", true},
		// A 429 and a request that never left are never an outcome.
		{aop.Result{Class: aop.ClassThrottled, HTTPStatus: 429}, "", RetryThrottled, "", "", false},
		{aop.Result{Class: aop.ClassNotSent}, "", RetryNotSent, "", "", true},
		{aop.Result{Class: aop.ClassNotSent, Untrusted: true}, ledger.StateQueued, "", StopTLS, "--base-url", false},
	} {
		o := rechargeOutcome(tc.res)
		if o.State != tc.state || o.Retry != tc.retry || o.Stop != tc.stop || o.Transient != tc.transient ||
			tc.hint != "" && !strings.Contains(o.Hint, tc.hint) {
			t.Errorf("%s code %d: %+v; want state %q retry %q stop %q hint ~%q transient %v",
				tc.res.Class, tc.res.Code, o, tc.state, tc.retry, tc.stop, tc.hint, tc.transient)
		}
	}
	// Every code of the provider's table leads somewhere, and a retry is
	// never also a state.
	for code := -1; code <= 100; code++ {
		o := rechargeOutcome(aop.Result{Class: aop.ClassOf(code), Code: code})
		if o.State == "" && o.Retry == "" {
			t.Errorf("code %d (%s): no next state", code, aop.ClassOf(code))
		}
		if o.Retry != "" && o.State != "" {
			t.Errorf("code %d: both a retry and a state", code)
		}
	}
	for code := range codeHints {
		if aop.ClassOf(code) != aop.ClassAccountStop {
			t.Errorf("code %d has an account hint but is %s in the client's table", code, aop.ClassOf(code))
		}
	}
}

// What each status-enquiry verdict does to an unsettled row.
func TestEnquiryOutcomes(t *testing.T) {
	for _, tc := range []struct {
		v      aop.Verdict
		state  ledger.State
		retry  RetryReason
		stop   string
		resend bool
	}{
		{aop.VerdictSuccess, ledger.StateSuccess, "", "", false},
		{aop.VerdictRefunded, ledger.StateRefunded, "", "", false},
		{aop.VerdictFailed, ledger.StateFailed, "", "", false},
		{aop.VerdictPending, ledger.StatePending, "", "", false},
		{aop.VerdictNotFound, "", "", "", true},
		{aop.VerdictAuth, "", "", StopAuth, false},
		{aop.VerdictUnknown, "", "", "", false},
		{"something new", "", "", "", false},
		{aop.VerdictNotSent, "", RetryNotSent, "", false},
		{aop.VerdictThrottled, "", RetryThrottled, "", false},
	} {
		o := enquiryOutcome(tc.v)
		if o.State != tc.state || o.Retry != tc.retry || o.Stop != tc.stop || o.Resend != tc.resend {
			t.Errorf("%s: %+v; want state %q retry %q stop %q resend %v", tc.v, o, tc.state, tc.retry, tc.stop, tc.resend)
		}
	}
}
