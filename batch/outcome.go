package batch

import (
	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// Outcome is what one answer means for its row and for the run (SPEC
// section 2). The send loop and the enquiry loop both look answers up in
// the tables below and nowhere else; what the provider's response codes
// mean (code to class) is the client's table, aop.ClassOf.
type Outcome struct {
	// State is the row's next state; "" leaves it as it is.
	State ledger.State
	// Retry, when set, means the answer decided nothing: the request may
	// go again (RetryPolicy), and is never the row's outcome.
	Retry RetryReason
	// Stop, when set, stops the run: the StopError's Reason.
	Stop string
	// Detail says what happened, for the row's message or the stop.
	Detail string
	// Hint says what to do about a stop.
	Hint string
	// Transient answers count toward the breaker.
	Transient bool
	// Resend, for an enquiry: the provider has no record, so an unknown
	// row may go again under the same referenceid.
	Resend bool
}

// Stop reasons (StopError.Reason).
const (
	StopAccount      = "account"
	StopAuth         = "auth"
	StopTLS          = "tls"
	StopBreaker      = "breaker"
	StopKnownRefs    = "known-refs"
	StopRetryPaid    = "retry-paid"
	StopUnknownLimit = "unknown-limit"
	StopLedger       = "ledger"
	StopLease        = "lease"
)

const authHint = "check the token or JWT secret and partner id (--auth, AOP_TOKEN, AOP_JWT_SECRET, AOP_PARTNER_ID)"

// noneHint is what to do when the provider wants a credential and none
// is configured.
const noneHint = "no credential is configured: set one (AOP_TOKEN or --token-file for a bearer token, --token-command, or AOP_JWT_SECRET and AOP_PARTNER_ID for a JWT; if you passed --auth none, drop it: it ignores any credential), then run again"

// commandHint is what to do when a --token-command gave no token.
const commandHint = "run the --token-command by hand: it must exit 0 and print the token on its first line; then run the same aopbatch command again"

// rechargeOutcomes is what a Recharge answer of each class does.
var rechargeOutcomes = map[aop.Class]Outcome{
	aop.ClassSuccess:   {State: ledger.StateSuccess},
	aop.ClassPending:   {State: ledger.StatePending},
	aop.ClassDuplicate: {State: ledger.StateDuplicate},
	aop.ClassFailed:    {State: ledger.StateFailed},
	// The row failed; several in a row hold the operator's other rows.
	aop.ClassOperatorDown: {State: ledger.StateFailed},
	// Declined before anything was taken: the row is not failed, it waits
	// for the account to be fixed. Every later row would meet the same.
	aop.ClassAccountStop: {State: ledger.StateQueued, Stop: StopAccount,
		Hint: "fix the account with the provider, then run again"},
	// The client refreshed the credential once already.
	aop.ClassAuth: {State: ledger.StateQueued, Stop: StopAuth, Hint: authHint,
		Detail: "authentication failed: the provider refused the credential (one that can be renewed, a --token-command or JWT, was renewed once and refused again)"},
	// Timeout, lost answer, 5xx, code 9, an unreadable body, a code
	// outside the table: the provider may have the transaction.
	aop.ClassUnknown:   {State: ledger.StateUnknown, Transient: true},
	aop.ClassThrottled: {Retry: RetryThrottled},
	aop.ClassNotSent:   {Retry: RetryNotSent, Transient: true},
}

// codeHints are the hints of the account-stop codes, each its own fix.
var codeHints = map[int]string{
	16: "top up the wallet, then run again to send the remaining rows",
	6:  "ask the provider to set the commission for this operator, then run again",
	12: "ask the provider to activate recharge permission, then run again",
}

// untrusted is the outcome of a Recharge refused at the TLS handshake:
// every row would meet the same certificate.
var untrusted = Outcome{State: ledger.StateQueued, Stop: StopTLS,
	Detail: "the provider's TLS certificate is not trusted",
	Hint:   "check --base-url; aopbatch never skips certificate verification"}

// rechargeOutcome looks up what Recharge answer res does.
func rechargeOutcome(res aop.Result) Outcome {
	if res.Untrusted {
		return untrusted
	}
	o, ok := rechargeOutcomes[res.Class]
	if !ok {
		o = rechargeOutcomes[aop.ClassUnknown]
	}
	if h, ok := codeHints[res.Code]; ok && o.Stop != "" {
		o.Hint = h
	}
	return o
}

// enquiryOutcomes is what a status enquiry's verdict does to an unsettled
// row (pending, duplicate or unknown).
var enquiryOutcomes = map[aop.Verdict]Outcome{
	aop.VerdictSuccess:  {State: ledger.StateSuccess, Detail: "confirmed by status enquiry: success"},
	aop.VerdictRefunded: {State: ledger.StateRefunded, Detail: "status enquiry: charged, then refunded to the wallet"},
	aop.VerdictFailed:   {State: ledger.StateFailed, Detail: "status enquiry: failed (nothing taken, or returned to the wallet)"},
	aop.VerdictPending:  {State: ledger.StatePending, Detail: "status enquiry: still pending at the provider"},
	// No record: an unknown row never reached it and goes again under the
	// same referenceid (a duplicate would answer 18). A pending or
	// duplicate row the provider did see: wait, never re-send.
	aop.VerdictNotFound: {Resend: true},
	aop.VerdictAuth: {Stop: StopAuth, Hint: authHint,
		Detail: "status enquiry: authentication failed: the provider refused the credential (one that can be renewed, a --token-command or JWT, was renewed once and refused again)"},
	// Unreadable: ask again next round.
	aop.VerdictUnknown:   {Detail: "status enquiry gave no usable answer"},
	aop.VerdictNotSent:   {Retry: RetryNotSent},
	aop.VerdictThrottled: {Retry: RetryThrottled},
}

// enquiryOutcome looks up what verdict v does.
func enquiryOutcome(v aop.Verdict) Outcome {
	if o, ok := enquiryOutcomes[v]; ok {
		return o
	}
	return enquiryOutcomes[aop.VerdictUnknown]
}
