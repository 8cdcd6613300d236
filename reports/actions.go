package reports

import (
	"fmt"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// inr renders paise for people: "₹57,87,601.13" (Indian grouping). CSV
// files keep plain rupees (rupees) so they can be summed.
func inr(paise int64) string { return ledger.FormatRupeesIndian(paise) }

// signedINR is inr with an explicit sign for differences: "+₹10.00".
func signedINR(paise int64) string {
	if paise > 0 {
		return "+" + inr(paise)
	}
	return inr(paise)
}

// actions says what a person should do about the rows not settled well.
// Nothing here ever offers for sending again a row that the provider or
// the statement given says was charged (SPEC section 6).
func (s *Summary) actions() []string {
	a := []string{}
	add := func(format string, args ...any) { a = append(a, fmt.Sprintf(format, args...)) }
	c, amt, r := s.Counts, s.AmountsPaise, s.Reconciliation
	if len(s.Running) > 0 {
		add("%s: these figures are changing as you read them; act on nothing below until it has ended, then report again", s.runningText())
	}
	if !s.FileRecorded {
		add("%s", s.partText())
	}
	// Once aopbatch reconcile has asked the provider about a row, the
	// advice is what its answer leaves to do, not to ask.
	var failedCharged, successNotKept askedRows
	if s.recon != nil {
		failedCharged, successNotKept = s.recon.failedCharged, s.recon.successNotKept
	}
	// The rows of one status disagreement: those not asked about, then
	// those asked, by whether the provider's answer was final. tails
	// says what to do with each.
	disputed := func(all Tally, asked askedRows, state, shows string, tails [3]string) {
		head := func(t Tally) string {
			return fmt.Sprintf("%s recorded %s (%s) that the statement shows %s", rowsText(t.Rows), state, inr(t.AmountPaise), shows)
		}
		if t := minus(all, asked.total()); t.Rows > 0 {
			add("%s: %s", head(t), tails[0])
		}
		final, open := asked.split()
		for i, g := range []askedRows{final, open} {
			if t := g.total(); t.Rows > 0 {
				add("%s, which aopbatch reconcile asked the provider about (%s): %s", head(t), g.text(), tails[i+1])
			}
		}
	}
	disputed(r.FailedButCharged, failedCharged, "failed", "charged", [3]string{
		"do NOT send them again; aopbatch reconcile --statement FILE confirms each with the provider and records what it says",
		"do NOT send them again; take the statement line up with the provider (each row's answer is in reconciliation.csv)",
		"do NOT send them again; run aopbatch reconcile --statement FILE again later to ask once more"})
	disputed(r.SuccessNotKept, successNotKept, "success", "not kept (failed, or refunded to the wallet)", [3]string{
		"the payees were not paid; aopbatch reconcile --statement FILE confirms and records it before anyone pays them again",
		"take the statement line up with the provider before anyone pays them again (each row's answer is in reconciliation.csv)",
		"pay no one again before aopbatch reconcile --statement FILE, run again later, has the provider's answer"})
	if t := r.ChargedNotSent; t.Rows > 0 {
		add("%s charged on the statement (%s) that aopbatch never sent: find out who sent them before sending anything again",
			rowsText(t.Rows), inr(t.AmountPaise))
	}
	if t := r.ExtraCharges; t.Rows > 0 {
		add("%s charged twice on the statement (%s extra): claim it back from the provider", rowsText(t.Rows), inr(t.AmountPaise))
	}
	if r.AmountMismatch > 0 {
		add("%s with another amount on the statement than in the ledger: see amount_mismatch in reconciliation.csv and take it up with the provider", rowsText(r.AmountMismatch))
	}
	if g := s.AtRisk.OutcomeUnknown; g.Rows > 0 {
		add("%s (%s) sent with no final answer yet (inflight, pending, duplicate, unknown): money may have moved; run aopbatch resolve, never send them again",
			rowsText(g.Rows), inr(g.AmountPaise))
	}
	if g := s.AtRisk.NotYetSent; g.Rows > 0 {
		if s.sentBefore > 0 {
			add("%s (%s) not sent: the provider already held %d of the first %d rows when the last run asked before sending, so the file was sent before, most likely from another ledger; "+
				"run it with the ledger that sent it (every run on this one stops the same way), or, if that ledger is lost, see --allow-known-refs in the README before sending anything",
				rowsText(g.Rows), inr(g.AmountPaise), s.sentBefore, s.sentBeforeAsked)
		} else if n := s.queuedCharged(); n > 0 {
			add("%s (%s) not sent yet (queued or held), %d of them charged on the statement: find out who sent those before running aopbatch run again to resume",
				rowsText(g.Rows), inr(g.AmountPaise), n)
		} else if fix, ok := accountStops[s.stopCode]; ok {
			add("%s (%s) not sent yet (queued or held): the last request was answered %d (%s): %s, then run aopbatch run again to resume",
				rowsText(g.Rows), inr(g.AmountPaise), s.stopCode, codeMeanings[s.stopCode], fix)
		} else {
			add("%s (%s) not sent yet (queued or held): run aopbatch run again to resume", rowsText(g.Rows), inr(g.AmountPaise))
		}
	}
	if c.Rejected > 0 {
		money := inr(amt.Rejected)
		if n := s.unreadAmounts; n > 0 {
			// Their amounts count as nothing: the sum is not the file's.
			money += fmt.Sprintf(", beside %d whose amount could not be read", n)
		}
		a = append(a, s.rejectedAction(c.Rejected, money))
	}
	if n := s.retryRefused.conflict; n > 0 {
		add("%s in conflict: each retries a row another batch retries already (named in rows.csv), so it was not sent: that batch pays it, or its own export offers it again", rowsText(n))
	}
	if n := c.Conflict - s.retryRefused.conflict; n > 0 {
		add("%s in conflict, not sent: each has the referenceid of a row of another batch (named in rows.csv), most likely the same payment, paid or offered there; "+
			"check that row, and pay one under a new referenceid only if it is truly another payment", rowsText(n))
	}
	if t := s.failedPaidBehind; t.Rows > 0 {
		add("%s failed (%s) that retried a row found charged or not settled since (export names each): do NOT send them again",
			rowsText(t.Rows), inr(t.AmountPaise))
	}
	if n := c.Failed - r.FailedButCharged.Rows - s.failedPaidBehind.Rows; n > 0 {
		how := "aopbatch export --state failed gives a file to correct and send under new referenceids"
		if r.Performed {
			how = "aopbatch export --state failed --statement FILE gives a file to correct and send under new referenceids, leaving out any row the statement shows charged"
		}
		switch t := s.failedLater; {
		case t.Rows >= n:
			add("%s failed (%s, nothing taken), each held by a later batch of this ledger (sent again already, or offered by that batch's own export): nothing to export from this batch",
				rowsText(n), inr(amt.Failed-r.FailedButCharged.AmountPaise-s.failedPaidBehind.AmountPaise))
		case t.Rows > 0:
			add("%s failed (%s, nothing taken), %d of them (%s) held by a later batch of this ledger (sent again already, or offered by that batch's own export): %s, the other %d",
				rowsText(n), inr(amt.Failed-r.FailedButCharged.AmountPaise-s.failedPaidBehind.AmountPaise), t.Rows, inr(t.AmountPaise), how, n-t.Rows)
		default:
			add("%s failed (%s, nothing taken): %s", rowsText(n), inr(amt.Failed-r.FailedButCharged.AmountPaise-s.failedPaidBehind.AmountPaise), how)
		}
	}
	if c.Refunded > 0 {
		add("%s charged and refunded (%s returned to the wallet)", rowsText(c.Refunded), inr(amt.Refunded))
	}
	return a
}

// minus is t less u.
func minus(t, u Tally) Tally {
	return Tally{Rows: t.Rows - u.Rows, AmountPaise: t.AmountPaise - u.AmountPaise}
}

// codeMeanings are the provider's published response codes (SPEC section 1).
var codeMeanings = map[int]string{
	0: "accepted, final status later", 1: "recharge successful", 6: "commission not set", 8: "validation error",
	9: "unable to process request", 10: "token or signature refused", 11: "authentication failed",
	12: "recharge permission not active", 13: "operator down", 14: "bill payment failed",
	16: "insufficient funds in the wallet", 17: "amount outside the operator's limits", 18: "duplicate transaction",
}

// accountStops are the answers that stop a run for the whole account, and
// what a person does about each before the rows left can go (SPEC 2.7).
var accountStops = map[int]string{
	16: "top up the wallet",
	6:  "ask the provider to set the commission for the operator",
	12: "ask the provider to activate recharge permission",
}

// codeMeaning is a by-code line's text: the code's published meaning, the
// error code of a row without an answer, or the first message seen.
func codeMeaning(code int, errCode, msg string) string {
	if m, ok := codeMeanings[code]; ok {
		return m
	}
	if code < 0 && errCode != "" {
		return errCode
	}
	return clipN(oneLine(msg), maxCodeMessage)
}

// TextSummary is a few lines for the terminal, drawn from the same view
// as summary.md and report.html: counts, amounts, the verdict, the two
// figures of money at risk, the reconciliation's outcome and what to do.
func (s *Summary) TextSummary() string {
	v := s.view()
	var b strings.Builder
	fmt.Fprintf(&b, "batch %s: %d rows, %s\n", v.Batch, v.TotalRows, v.TotalAmount)
	var parts []string
	for _, st := range v.States {
		parts = append(parts, fmt.Sprintf("%s %d (%s)", st.Name, st.N, st.Amount))
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, "  %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "%s\n", v.Verdict)
	parts = parts[:0]
	for _, r := range v.Risk {
		p := fmt.Sprintf("%s %d rows, %s", strings.ToLower(r.Title), r.Rows, r.Amount)
		if r.Rows > 0 {
			p += " (oldest " + r.Oldest + ")"
		}
		parts = append(parts, p)
	}
	fmt.Fprintf(&b, "at risk: %s\n", strings.Join(parts, "; "))
	if rc := v.Recon; rc != nil {
		// Every row of the batch is in one figure of the first line, so
		// they add up to the row count above; the second line is about
		// the statement's entries.
		r := s.Reconciliation
		amt := func(c Category) string { return inr(r.AmountsPaise[c]) }
		fmt.Fprintf(&b, "reconciliation of %d rows: %d matched (%s; %d of them success: %s), %d amount mismatch (%s), %d status mismatch (%s), %d missing in statement (%s), %d failed and not in statement (nothing taken), %d never sent\n",
			s.Counts.Total, r.Matched, amt(Matched), r.MatchedSuccess.Rows, inr(r.MatchedSuccess.AmountPaise),
			r.AmountMismatch, amt(AmountMismatch), r.StatusMismatch, amt(StatusMismatch),
			r.MissingInStatement, amt(MissingInStatement), r.FailedNotInStatement, r.NotSent)
		fmt.Fprintf(&b, "statement: %d entries; %d missing in ledger (%s), %d duplicated in statement (%s), %d of other batches",
			r.StatementRows, r.MissingInLedger, amt(MissingInLedger), r.DuplicatedInStatement, amt(DuplicatedInStatement), r.InOtherBatch)
		if r.CountedInOtherBatch > 0 {
			fmt.Fprintf(&b, ", %d %s (%s)", r.CountedInOtherBatch, countedInText(r), amt(CountedInOtherBatch))
		}
		b.WriteString("\n")
		amount := rc.Control[1]
		fmt.Fprintf(&b, "control totals: ledger success %s, statement success %s, difference %s (statement minus ledger); net to recover %s\n",
			amount.Ledger, amount.Statement, amount.Diff, rc.NetToRecover)
	}
	for _, act := range v.Actions {
		fmt.Fprintf(&b, "to do: %s\n", act)
	}
	return b.String()
}

// queuedCharged is how many queued or held rows the statement shows
// charged; 0 when not reconciled.
func (s *Summary) queuedCharged() int64 {
	if s.recon == nil {
		return 0
	}
	return s.recon.queuedCharged
}

// partText says that the batch's file was not wholly recorded, and what
// records the rest.
func (s *Summary) partText() string {
	if s.copied {
		return fmt.Sprintf("Only part of the batch was copied in (a ledger copy stopped part way): every figure here is of the %s copied, "+
			"not of the whole batch; run the same aopbatch ledger copy again to copy it whole", rowsText(s.Counts.Total))
	}
	return fmt.Sprintf("Only part of the file was recorded (a run stopped while recording %s): every figure here is of the %s recorded, "+
		"not of the whole file; run the file again with aopbatch run to record and send the rest", orDash(s.Source), rowsText(s.Counts.Total))
}

// runningText names the processes running the batch as it was read.
func (s *Summary) runningText() string {
	rs := make([]ledger.Runner, len(s.Running))
	for i, r := range s.Running {
		rs[i] = ledger.Runner{Host: r.Host, PID: r.PID}
	}
	return fmt.Sprintf("A run is working on this batch now (%s)", ledger.RunnersText(rs))
}

// rejectedAction is the advice for a batch's n rejected rows, of money.
func (s *Summary) rejectedAction(n int64, money string) string {
	if int64(len(s.rejectedLater)+len(s.rejectedPaidBehind)) >= n {
		why := "each held by a later batch of this ledger (corrected and sent already, or offered by that batch's own export)"
		if len(s.rejectedPaidBehind) > 0 {
			why = "each held by a later batch of this ledger or retrying a row found charged or not settled since (rejects.csv says which)"
		}
		return fmt.Sprintf("%s rejected (%s), not sent here, %s: nothing to submit from this batch", rowsText(n), money, why)
	}
	msg := fmt.Sprintf("%s rejected (%s), not sent: correct rejects.csv and submit it as a new file", rowsText(n), money)
	if k := len(s.rejectedLater); k > 0 {
		msg += fmt.Sprintf(", leaving out the %d marked fixable \"no\" there: a later batch of this ledger holds each (corrected and sent already, or offered by that batch's own export)", k)
	}
	if k := len(s.rejectedPaidBehind); k > 0 {
		msg += fmt.Sprintf(", leaving out the %d marked fixable \"no\" there: each retries a row found charged or not settled since", k)
	}
	if s.recon != nil && len(s.recon.rejectedCharged) > 0 {
		msg += fmt.Sprintf(" (leave out the %d marked fixable \"no\": the statement shows them charged)", len(s.recon.rejectedCharged))
	}
	if s.repeatedRefs > 0 {
		msg += fmt.Sprintf("; first check the %d marked fixable \"review\": each repeats the referenceid of another line of the file and may be that payment a second time, so send it only if it is truly another payment", s.repeatedRefs)
	}
	if k := s.retryRefused.rejected; k > 0 {
		msg += fmt.Sprintf("; %d of them retry a row that is not one to pay again, or not this ledger's, or that another line retries (marked \"review\", reason in rejects.csv): "+
			"correcting them pays that row again", k)
	}
	return msg
}
