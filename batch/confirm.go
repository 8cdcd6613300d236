package batch

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// Prober asks the provider about one referenceid: aop.Client's Status.
type Prober interface {
	Status(ctx context.Context, ref string) (aop.StatusResult, error)
}

// ConfirmOptions tune Confirm. Zero values take defaults.
type ConfirmOptions struct {
	Rate        float64       // enquiries per second; 0 means no limit
	MaxAttempts int           // tries for an enquiry that never reached the provider; default 5
	Timeout     time.Duration // per enquiry; default 30s
	Now         func() time.Time
	Sleep       func(ctx context.Context, d time.Duration) error
}

// Confirmation is the provider's answer about one disputed row, and what
// of it the ledger recorded.
type Confirmation struct {
	Line        int
	ReferenceID string
	From        ledger.State
	Answer      aop.StatusResult
	// To is the state the row was corrected to; empty when the ledger was
	// left as it was (the provider agrees with it, or could not say).
	To  ledger.State
	Why string // what the answer means for the row, for a person
	// Another: the provider's record under the referenceid is another
	// payment (otherPayment), whatever its status.
	Another bool
}

// Final says whether the answer is the provider's last word on the row:
// a final status, no record of it, or a record of another payment (asked
// again, it is the same record). A pending answer about this payment, or
// none that could be read, may say more when asked again.
func (c Confirmation) Final() bool {
	if c.Another {
		return true
	}
	switch c.Answer.Verdict {
	case aop.VerdictSuccess, aop.VerdictRefunded, aop.VerdictFailed, aop.VerdictNotFound:
		return true
	}
	return false
}

// Confirm asks the provider, by status enquiry, about each of rows (rows a
// statement disputes) and records in the ledger what the provider
// confirms, with the enquiry as evidence (ledger.Correct), while o holds
// batch seq's lease. Nothing is ever sent: a row the provider has no
// record of stays as it is. The statement's word alone changes nothing.
func Confirm(ctx context.Context, l ledger.Store, p Prober, seq int64, o ledger.Owner, rows []ledger.Row, opt ConfirmOptions) ([]Confirmation, error) {
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 5
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Sleep == nil {
		opt.Sleep = sleep
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if opt.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(opt.Rate), 1)
	}
	out := make([]Confirmation, 0, len(rows))
	for _, row := range rows {
		var st aop.StatusResult
		var at time.Time
		var lat time.Duration
		for try := 1; ; try++ {
			if err := lim.Wait(ctx); err != nil {
				return out, err
			}
			at = opt.Now()
			rctx, cancel := context.WithTimeout(ctx, opt.Timeout)
			st, _ = p.Status(rctx, row.ReferenceID)
			cancel()
			lat = opt.Now().Sub(at)
			if enquiryOutcome(st.Verdict).Retry == "" || try >= opt.MaxAttempts {
				break
			}
			wait := st.RetryAfter
			if wait <= 0 {
				wait = time.Duration(try) * time.Second
			}
			if err := opt.Sleep(ctx, wait); err != nil {
				return out, err
			}
		}
		c := Confirmation{Line: row.Line, ReferenceID: row.ReferenceID, From: row.State, Answer: st, Another: otherPayment(row, st.Data) != ""}
		to, why := confirmedState(row, st)
		c.Why = why
		if to != "" && to != row.State {
			ev := ledger.Attempt{Kind: "status", At: at, Latency: lat, HTTPStatus: st.HTTPStatus, Code: st.Code, Class: string(st.Verdict),
				Message: evidence(row, st)}
			err := l.Correct(ctx, seq, o, ledger.Correction{Line: row.Line, From: row.State, To: to, TxnID: st.Data.TxnID, Evidence: ev,
				Message: fmt.Sprintf("reconcile: the provider confirms %s (was %s)", to, row.State)})
			if err != nil {
				return out, err
			}
			c.To = to
		}
		out = append(out, c)
	}
	return out, nil
}

// evidence is the attempts-log line that says why a row was corrected.
func evidence(row ledger.Row, st aop.StatusResult) string {
	d := st.Data
	msg := fmt.Sprintf("reconcile: status enquiry answered %s (status %q, refunded %q, txnid %q, operator ref %q, amount %q", st.Verdict,
		d.Status, d.Refunded, d.TxnID, d.OperatorID, d.Amount)
	if d.DateRefunded != "" {
		msg += fmt.Sprintf(", refunded %s as %q", d.DateRefunded, d.RefundTxnID)
	}
	return msg + fmt.Sprintf("); the ledger had %s", row.State)
}

// confirmedState is the state the provider's answer puts row in, or ""
// when the ledger stays as it is, and why, for a person.
func confirmedState(row ledger.Row, st aop.StatusResult) (ledger.State, string) {
	if why := otherPayment(row, st.Data); why != "" {
		return "", "the provider's record under this referenceid is another payment (" + why + "): check with the provider"
	}
	s := row.State
	unsettled := slices.Contains(unsettledStates, s)
	switch st.Verdict {
	case aop.VerdictSuccess:
		switch {
		case s == ledger.StateFailed || unsettled:
			return ledger.StateSuccess, "the provider charged it"
		case s == ledger.StateSuccess:
			return "", "the provider confirms success, as the ledger has it"
		}
		return "", "the provider says success, the ledger refunded: check with the provider"
	case aop.VerdictRefunded:
		switch {
		case s == ledger.StateSuccess || unsettled:
			return ledger.StateRefunded, "the provider charged it, then refunded it to the wallet"
		case s == ledger.StateRefunded:
			return "", "the provider confirms the refund, as the ledger has it"
		}
		return "", "the provider charged and refunded it: nothing kept, as the ledger's failed says"
	case aop.VerdictFailed:
		switch {
		case s == ledger.StateSuccess:
			return ledger.StateRefunded, "the provider says failed: the money is back in the wallet"
		case unsettled:
			return ledger.StateFailed, "the provider says failed: nothing kept"
		}
		return "", "the provider says failed: nothing kept, as the ledger has it"
	case aop.VerdictPending:
		if s == ledger.StateDuplicate || s == ledger.StateUnknown {
			return ledger.StatePending, "the provider has it pending"
		}
		return "", "the provider has it still pending"
	case aop.VerdictNotFound:
		return "", "the provider has no record of this referenceid"
	}
	return "", fmt.Sprintf("no usable answer (%s: %s)", st.Verdict, st.Message)
}
