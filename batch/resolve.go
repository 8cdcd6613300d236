package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// Resolve settles batch b's pending, duplicate and unknown rows by status
// enquiry, in rounds with growing pauses, until none is left or
// ResolveTimeout passes. An unknown row the provider has no record of is
// sent again under the same referenceid (a duplicate would answer 18).
func (e *Engine) Resolve(ctx context.Context, b ledger.Batch) error {
	// From here Unsure counts the batch's unsettled rows, earlier runs'
	// included, and each one settled takes one off.
	unsure, err := e.countUnsettled(ctx, b)
	if err != nil {
		return err
	}
	e.progress.Unsure.Store(unsure)
	// Said, with how many, so that the log of the process that checked
	// them (a dead process's rows, taken over) shows when it did and how
	// it ended; EnquireAfterStop says its own.
	say := unsure > 0 && !e.enquiring.Load()
	if say {
		e.cfg.Log.Info("checking rows of unknown outcome with the provider before anything is sent again (pending, duplicate, unknown; rows other runs left included)",
			"rows", unsure)
	}
	asked0, left := e.progress.Enquired.Load(), unsure
	w, err := e.l.NewWriter(context.WithoutCancel(ctx), b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	wctx, cancelWaits := e.untilStop(ctx)
	defer cancelWaits()
	stopMonitor := e.monitor(false)
	deadline := e.cfg.Now().Add(e.cfg.ResolveTimeout)
	pause := e.cfg.ResolveBackoff
	var rerr error
	for {
		if ctx.Err() != nil || e.halted() {
			break
		}
		var asked int
		if asked, rerr = e.resolveRound(ctx, wctx, w, b, deadline); rerr != nil {
			break
		}
		if asked == 0 && e.enquiring.Load() {
			break // only rows that may not be sent again after the stop are left
		}
		if rerr = w.Flush(context.WithoutCancel(ctx)); rerr != nil {
			break
		}
		// Counted again, not only tallied: on a shared ledger other
		// processes settle rows too, and a hold (holdUnfound) may have been
		// refused.
		n, err := e.countUnsettled(ctx, b)
		if err != nil {
			rerr = err
			break
		}
		if left = n; left == 0 {
			break
		}
		e.progress.Unsure.Store(left)
		// The next round, or sooner the one a dead run's row may be sent
		// again in. Past the deadline only that one: with --timeout and
		// --resolve-timeout both 30 s, pauses of 8 and 10 s ended a rerun
		// after a kill -9 seconds before its rows could be sent, asking
		// about them meanwhile, and left them to another run.
		now := e.cfg.Now()
		next := now.Add(pause)
		due, ok := e.nextResend(now)
		if ok && due.Before(next) {
			next = due
		}
		if next.After(deadline) {
			if !ok || due.After(deadline) {
				break
			}
			next = due
		}
		if e.cfg.Sleep(wctx, next.Sub(now)) != nil {
			break
		}
		pause = min(pause*2, 10*time.Second)
	}
	stopMonitor()
	if err := w.Close(); err != nil {
		e.ledgerFailed(err)
	}
	e.noteRefused(w.Refused())
	if say && rerr == nil && ctx.Err() == nil && !e.halted() {
		asked := e.progress.Enquired.Load() - asked0
		if left == 0 {
			e.cfg.Log.Info("rows of unknown outcome checked with the provider", "enquiries", asked, "still_unsettled", left)
		} else {
			e.cfg.Log.Warn("rows of unknown outcome checked with the provider", "enquiries", asked, "still_unsettled", left,
				"hint", "aopbatch resolve asks about them again later; never send them under a new referenceid")
		}
	}
	if e.enquiring.Load() {
		// EnquireAfterStop's pass: the stop is known; a ledger error met
		// asking is not.
		if rerr != nil && ctx.Err() == nil {
			return rerr
		}
		return nil
	}
	if s := e.Stopped(); s != nil {
		return s
	}
	if rerr != nil && ctx.Err() == nil {
		return rerr
	}
	return nil
}

var unsettledStates = []ledger.State{ledger.StatePending, ledger.StateDuplicate, ledger.StateUnknown}

// countUnsettled counts batch b's pending, duplicate and unknown rows.
func (e *Engine) countUnsettled(ctx context.Context, b ledger.Batch) (int64, error) {
	var n int64
	for _, s := range unsettledStates {
		c, err := e.l.CountState(ctx, b.Seq, s)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// resolveRound enquires every unsettled row once, through the run's
// workers, limiter and in-flight limit, and says how many it asked about.
// In EnquireAfterStop's pass the unknown rows the provider has no record
// of are asked about once: they may not be sent again until a next run.
// A round hands out no row after deadline (--resolve-timeout), or after
// one --timeout from its start when that is later: a round of 50,000 rows
// at 10/s would otherwise take 83 minutes past it, and a round begun just
// before it (the one that finds a dead run's rows due for sending again)
// still gets to work. Rows already out finish.
func (e *Engine) resolveRound(ctx, wctx context.Context, w ledger.Writer, b ledger.Batch, deadline time.Time) (int, error) {
	p := newPool(e.poolSize(), e.poolWant, func(j job) { e.work(ctx, wctx, w, j) })
	defer p.close()
	until := deadline
	if t := e.cfg.Now().Add(e.cfg.Timeout); t.After(until) {
		until = t
	}
	var keep func(ledger.Row) bool
	if e.enquiring.Load() {
		keep = func(r ledger.Row) bool { _, left := e.notFound.Load(r.Line); return !left }
	} else {
		// A dead run's row the provider had no record of is asked about
		// again when it may be sent (nextResend wakes the loop then), not
		// every round meanwhile: 385 enquiries for 55 rows after a kill -9
		// (a new user's run), all spent from the account's rate. Its late
		// request, had it arrived, is found by that enquiry all the same.
		now := e.cfg.Now()
		keep = func(r ledger.Row) bool { return !e.waitingPast(r.Line, now) }
	}
	return e.submitUnsettled(ctx, b, p, keep, nil, until)
}

// EnquireAfterStop takes the error Send or Resolve ended with. When it is
// a stop that leaves status enquiries meaningful (the wallet or the
// account, SPEC section 2 rule 7, --max-unknown-amount, or rows the
// provider answered 18 to on their first send), it asks the
// provider about batch b's pending, duplicate and unknown rows before the
// run exits. Nothing more is sent: an unknown row the provider has no
// record of stays unknown, for the next run to send. Without it those
// rows would stay unsettled, and in the report as money that may have
// moved, until a next run or resolve. It returns the stop (any other
// error unchanged) and, like Resolve, gives up after ResolveTimeout; a
// stop met during the pass (the provider refusing the credential, the
// ledger failing) ends it.
func (e *Engine) EnquireAfterStop(ctx context.Context, b ledger.Batch, ended error) error {
	s := e.Stopped()
	if !errors.As(ended, new(*StopError)) || s == nil || ctx.Err() != nil ||
		s.Reason != StopAccount && s.Reason != StopUnknownLimit && s.Reason != StopKnownRefs && s.Reason != StopRetryPaid {
		return ended
	}
	n, err := e.countUnsettled(ctx, b)
	if err != nil {
		return fmt.Errorf("%w; counting the unsettled rows to ask about after the stop: %v", s, err)
	}
	if n == 0 {
		return s
	}
	e.enquiring.Store(true)
	e.cfg.Log.Info("asking the provider about this batch's unsettled rows before exiting; nothing more is sent",
		"resolve_timeout", e.cfg.ResolveTimeout.String())
	err = e.Resolve(ctx, b)
	if h := e.haltErr.Load(); h != nil {
		// The pass met a stop of its own (the ledger, the lease, the
		// credential): what to fix first, with the first stop kept.
		return &StopError{Reason: h.Reason, Detail: h.Detail, Hint: h.Hint, TakenOver: h.TakenOver, Before: s}
	}
	if err != nil {
		return fmt.Errorf("%w; asking about the unsettled rows after the stop: %v", s, err)
	}
	return s
}

// enquiryStop stops the run for status enquiry answer st, whose outcome o
// is a stop (the credential refused).
func (e *Engine) enquiryStop(o Outcome, st aop.StatusResult) {
	s := &StopError{Reason: o.Stop, Detail: fmt.Sprintf("%s (HTTP %d, code %d)", o.Detail, st.HTTPStatus, st.Code), Hint: o.Hint}
	e.credentialStop(s, "status enquiry: ", st.Message, st.HTTPStatus, st.Code, st.NoCredential, st.RenewFailed)
	e.stop(s)
}

// askStatus makes one status enquiry about ref through the run's limiter
// and in-flight gate: its answer, when it was asked and how long the
// answer took; ok false when no token could be had (stopped, cancelled).
func (e *Engine) askStatus(ctx, wctx context.Context, ref string) (st aop.StatusResult, at time.Time, lat time.Duration, ok bool) {
	tk, err := e.take(wctx)
	if err != nil {
		return st, at, 0, false
	}
	at = e.cfg.Now()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Timeout)
	e.sending(1)
	st, _ = e.p.Status(rctx, ref)
	e.sending(-1)
	cancel()
	lat = e.cfg.Now().Sub(at)
	if st.MadeRequest() {
		e.progress.Enquired.Add(1)
	}
	e.answered(tk, st.Wrote, lat, st.Verdict != aop.VerdictNotSent && !st.NoCredential, st.Verdict == aop.VerdictThrottled, st.Timeout, st.HTTPStatus >= 500)
	return st, at, lat, true
}

// enquire asks the provider about one row and applies the answer,
// retrying (RetryPolicy) an enquiry that got no decision.
func (e *Engine) enquire(ctx, wctx context.Context, w ledger.Writer, row ledger.Row) {
	var first time.Time
	tries := map[RetryReason]int{}
	for {
		st, at, lat, ok := e.askStatus(ctx, wctx, row.ReferenceID)
		if !ok {
			return
		}
		a := &ledger.Attempt{Kind: "status", At: at, Latency: lat, HTTPStatus: st.HTTPStatus, Code: st.Code,
			Class: string(st.Verdict), Message: st.Message}
		o := enquiryOutcome(st.Verdict)
		if o.Retry == "" {
			e.apply(ctx, wctx, w, row, st, a, o)
			return
		}
		if first.IsZero() {
			first = at
		}
		tries[o.Retry]++
		r := Retry{Why: o.Retry, Tries: tries[o.Retry], RetryAfter: st.RetryAfter, First: first}
		if why := e.retryWait(ctx, wctx, r); why != "" {
			// Asked again in the next round, or the next run.
			e.record(w, unsettled(row, a, "status enquiry gave no usable answer: "+gaveUp(r, st.Message, e.cfg.Now(), why)))
			return
		}
		e.record(w, unsettled(row, a, ""))
	}
}

// apply records what an enquiry's answer means for the row (outcome o).
func (e *Engine) apply(ctx, wctx context.Context, w ledger.Writer, row ledger.Row, st aop.StatusResult, a *ledger.Attempt, o Outcome) {
	txn := st.Data.TxnID
	if why := otherPayment(row, st.Data); why != "" {
		// The provider's record under this referenceid is not this row's
		// payment (the referenceid was used elsewhere first): its status
		// says nothing about ours. See collided.
		e.collided(w, row, st.Data, why, a)
		return
	}
	switch {
	case o.Stop != "":
		e.record(w, unsettled(row, a, ""))
		e.enquiryStop(o, st)
	case o.Resend:
		if row.State != ledger.StateUnknown {
			// The provider said it had this referenceid (18) or accepted it
			// (0) yet cannot find it now: wait for it, never re-send.
			e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Attempt: a,
				Message: fmt.Sprintf("status enquiry found no record although the provider answered %s: check again later", row.State)})
			return
		}
		if e.enquiring.Load() {
			// After a stop nothing is sent: the next run asks again and,
			// still not found, sends it. Only the attempt is recorded: the
			// row's message may be RecoveredMessage, which keeps the next
			// run from sending it while a dead run's request may still
			// arrive (below).
			e.notFound.Store(row.Line, true)
			e.record(w, ledger.Update{Line: row.Line, Code: -1, Attempt: a})
			return
		}
		if row.Message == ledger.RecoveredMessage && e.l.Now().Sub(row.Updated) < e.cfg.Timeout {
			// Left in flight by a run that ended (killed, or paused past its
			// lease and taken over): its request may still be on its way and
			// recorded after this "not found". Sent again now it could reach
			// the provider twice; once --timeout has passed since it went,
			// it has arrived or it never will. When it went is at the latest
			// when the row was recovered (Updated: that run was dead, or its
			// lease had lapsed, and it sends nothing without one), not its
			// first send, which may be a request of long before.
			e.record(w, ledger.Update{Line: row.Line, Code: -1, Attempt: a})
			// Updated is on the ledger's clock (a shared store's is the
			// database's), the wait on this host's.
			due := row.Updated.Add(e.cfg.Timeout).Add(e.cfg.Now().Sub(e.l.Now()))
			e.waitToResend(row.Line, due)
			if !e.toldWaiting.Swap(true) {
				// Said once: the run may seem stalled meanwhile.
				e.cfg.Log.Info("rows a run that ended left in flight are not at the provider yet: each is asked about again, and sent again if still not there, once --timeout has passed since it went (its request may still arrive)",
					"timeout", e.cfg.Timeout.String(), "first_resend_after", due.Format(time.TimeOnly))
			}
			return
		}
		if e.holdUnfound(w, row, a) {
			return
		}
		e.record(w, ledger.Update{Line: row.Line, Code: -1, Attempt: a})
		// The provider never recorded it: sending again under the SAME
		// referenceid is safe, since a duplicate would answer 18.
		tk, err := e.take(wctx)
		if err != nil {
			return // still unknown: the next resolve asks again
		}
		if e.stopping() || !e.leaseOK() {
			e.untake(tk)
			return
		}
		if e.holdUnfound(w, row, nil) { // its operator went down while it waited
			e.untake(tk)
			return
		}
		if e.retryPaid(ctx, row, retryPaidUnknown) { // still unknown: a person decides
			e.untake(tk)
			return
		}
		if err := w.MarkInflight(ctx, row.Line, row.Attempts); err != nil {
			e.untake(tk) // nothing went
			if errors.Is(err, ledger.ErrLeaseLost) {
				e.ledgerFailed(err)
			}
			return
		}
		e.deliver(ctx, wctx, w, row, tk)
	case o.State != "":
		e.record(w, ledger.Update{Line: row.Line, To: o.State, Code: -1, TxnID: txn, Attempt: a, Message: o.Detail})
		e.resolved(row, o.State)
	default: // unreadable: ask again next round
		e.record(w, unsettled(row, a, o.Detail+": "+st.Message))
	}
}

// waitToResend notes that row line, not at the provider, may be sent
// again at due, after one more enquiry then: the request of the run that
// ended may arrive meanwhile, and settle it.
func (e *Engine) waitToResend(line int, due time.Time) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	if e.waiting == nil {
		e.waiting = map[int]time.Time{}
	}
	e.waiting[line] = due
}

// waitingPast says row line is waiting to be sent again, due after now.
func (e *Engine) waitingPast(line int, now time.Time) bool {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	due, ok := e.waiting[line]
	return ok && due.After(now)
}

// nextResend is the earliest time after now a waiting row may be sent
// again. Rows already due are forgotten: a long resolve of a large batch
// would otherwise keep every line it ever waited on.
func (e *Engine) nextResend(now time.Time) (time.Time, bool) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	var first time.Time
	for line, due := range e.waiting {
		if !due.After(now) {
			delete(e.waiting, line)
			continue
		}
		if first.IsZero() || due.Before(first) {
			first = due
		}
	}
	return first, !first.IsZero()
}

// unsettled records an enquiry (attempt a) that left row unsettled, and
// why (msg; "" keeps the row's message). A row a run that ended left in
// flight is left as it is, msg going to the attempt: apply waits --timeout
// from its recovery (Updated), by RecoveredMessage, before sending it
// again; rewritten by every round (a 429 each time) it would wait for ever.
func unsettled(row ledger.Row, a *ledger.Attempt, msg string) ledger.Update {
	if row.Message == ledger.RecoveredMessage {
		if msg != "" {
			a.Message = msg
		}
		return ledger.Update{Line: row.Line, Code: -1, Attempt: a}
	}
	if msg == "" {
		msg = row.Message
	}
	return ledger.Update{Line: row.Line, To: row.State, Code: -1, Attempt: a, Message: msg}
}

// holdUnfound holds an unknown row the provider has no record of when
// its operator is down (SPEC section 2, rule 8): sent now it would be
// answered 13, a final failure needing a new referenceid, where the
// operator's queued rows are held and a rerun sends them. It is as unsent
// as they are: an enquiry found no record, and a request of a run that
// ended had --timeout to arrive (apply waits for that first). a is the
// enquiry's attempt, when not yet recorded.
//
// The move applies only while the row has the sends this enquiry saw: on
// a shared ledger another process may have found no record too, sent the
// row and recorded it unknown again meanwhile. Its request may be charged,
// so the row must stay unknown, to be asked about again.
func (e *Engine) holdUnfound(w ledger.Writer, row ledger.Row, a *ledger.Attempt) bool {
	if !e.held(row.Operator) {
		return false
	}
	sends := row.Attempts
	e.record(w, ledger.Update{Line: row.Line, To: ledger.StateHeld, Code: -1, Attempt: a, IfSends: &sends,
		Message: fmt.Sprintf("status enquiry found no record; operator %d is down: held, a rerun sends it", row.Operator)})
	e.progress.Unsure.Add(-1) // as it most likely applies; Resolve counts again each round
	return true
}

// resolved tallies an unsettled row's new state.
func (e *Engine) resolved(row ledger.Row, to ledger.State) {
	if !to.Final() {
		return
	}
	if slices.Contains(unsettledStates, row.State) {
		e.progress.Unsure.Add(-1)
	}
	switch to {
	case ledger.StateSuccess:
		e.progress.Success.Add(1)
	case ledger.StateFailed, ledger.StateRefunded:
		e.progress.Failed.Add(1)
	}
}

// otherPayment says how the provider's record differs from the row, when
// it has the fields to tell; "" when it matches or cannot be compared.
func otherPayment(row ledger.Row, d aop.StatusData) string {
	var diff []string
	if d.Amount != "" {
		if p, err := parseProviderRupees(d.Amount); err == nil && p != row.AmountPaise {
			diff = append(diff, fmt.Sprintf("amount %s there, %s here", FormatRupees(p), FormatRupees(row.AmountPaise)))
		}
	}
	if d.CANumber != "" && row.CANumber != "" && strings.TrimSpace(d.CANumber) != row.CANumber {
		diff = append(diff, "canumber differs")
	}
	return strings.Join(diff, ", ")
}

// parseProviderRupees reads the provider's amount text, which may carry
// trailing zero decimals ("10.000") that the input-file parser refuses.
func parseProviderRupees(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if whole, frac, ok := strings.Cut(s, "."); ok {
		frac = strings.TrimRight(frac, "0")
		if frac == "" {
			s = whole
		} else {
			s = whole + "." + frac
		}
	}
	return ParseRupees(s)
}
