package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// Resolve settles batch b's pending, duplicate and unknown rows by status
// enquiry, in rounds with growing pauses, until none is left or
// ResolveTimeout passes. An unknown row the provider has no record of is
// sent again under the same referenceid (a duplicate would answer 18).
func (e *Engine) Resolve(ctx context.Context, b ledger.Batch) error {
	if e.started.IsZero() {
		e.started = e.cfg.Now()
	}
	// From here Unsure counts the batch's unsettled rows, earlier runs'
	// included, and each one settled takes one off.
	var unsure int64
	for _, s := range unsettledStates {
		n, err := e.l.CountState(ctx, b.Seq, s)
		if err != nil {
			return err
		}
		unsure += n
	}
	e.progress.Unsure.Store(unsure)
	w, err := e.l.NewWriter(context.WithoutCancel(ctx), b.Seq, e.cfg.Owner)
	if err != nil {
		return err
	}
	deadline := e.cfg.Now().Add(e.cfg.ResolveTimeout)
	pause := e.cfg.ResolveBackoff
	var rerr error
	for {
		if ctx.Err() != nil || e.stopping() {
			break
		}
		if rerr = e.resolveRound(ctx, w, b); rerr != nil {
			break
		}
		if rerr = w.Flush(context.WithoutCancel(ctx)); rerr != nil {
			break
		}
		left, err := e.unsettled(ctx, b)
		if err != nil || !left {
			rerr = err
			break
		}
		if e.cfg.Now().Add(pause).After(deadline) {
			break
		}
		if e.cfg.Sleep(ctx, pause) != nil {
			break
		}
		pause = min(pause*2, 10*time.Second)
	}
	if err := w.Close(); err != nil {
		e.ledgerFailed(err)
	}
	if r := w.Refused(); r != nil {
		e.cfg.Log.Error("the ledger refused an outcome: please report this", "err", r)
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

func (e *Engine) unsettled(ctx context.Context, b ledger.Batch) (bool, error) {
	for _, s := range unsettledStates {
		ok, err := e.l.Any(ctx, b.Seq, s)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// resolveRound enquires every unsettled row once.
func (e *Engine) resolveRound(ctx context.Context, w ledger.Writer, b ledger.Batch) error {
	for _, s := range unsettledStates {
		jobs := make(chan ledger.Row, e.cfg.Workers)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			defer close(jobs)
			after := 0
			for {
				page, err := e.l.Page(gctx, b.Seq, s, after, pageSize)
				if err != nil {
					if gctx.Err() != nil {
						return nil
					}
					return err
				}
				for _, r := range page {
					select {
					case jobs <- r:
					case <-gctx.Done():
						return nil
					case <-e.stopCh:
						return nil
					}
				}
				if len(page) < pageSize {
					return nil
				}
				after = page[len(page)-1].Line
			}
		})
		for i := 0; i < e.cfg.Workers; i++ {
			g.Go(func() error {
				for row := range jobs {
					if ctx.Err() != nil || e.stopping() {
						continue
					}
					e.enquire(ctx, w, row)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// enquire asks the provider about one row and applies the answer.
func (e *Engine) enquire(ctx context.Context, w ledger.Writer, row ledger.Row) {
	var st aop.StatusResult
	for try := 1; ; try++ {
		tk, err := e.lim.Wait(ctx)
		if err != nil {
			return
		}
		at := e.cfg.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Timeout)
		st, _ = e.p.Status(rctx, row.ReferenceID)
		cancel()
		e.lim.done(tk, st.Wrote)
		e.progress.Enquired.Add(1)
		lat := e.cfg.Now().Sub(at)
		a := &ledger.Attempt{Kind: "status", At: at, Latency: lat, HTTPStatus: st.HTTPStatus, Code: st.Code,
			Class: string(st.Verdict), Message: st.Message}
		retry := false
		switch st.Verdict {
		case aop.VerdictNotSent:
			retry = true
		case aop.VerdictThrottled:
			e.lim.throttled(e.achievedRate())
			retry = true
		}
		if retry && try < e.cfg.MaxAttempts {
			e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Message: row.Message, Attempt: a})
			wait := st.RetryAfter
			if wait <= 0 {
				wait = e.cfg.Retry.Delay(try)
			}
			if e.cfg.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		e.apply(ctx, w, row, st, a)
		return
	}
}

func (e *Engine) apply(ctx context.Context, w ledger.Writer, row ledger.Row, st aop.StatusResult, a *ledger.Attempt) {
	txn := st.Data.TxnID
	if why := otherPayment(row, st.Data); why != "" {
		// The provider's record under this referenceid is not this row's
		// payment (the referenceid was used elsewhere first): its status
		// says nothing about ours. See collided.
		e.collided(w, row, st.Data, why, a)
		return
	}
	switch st.Verdict {
	case aop.VerdictSuccess:
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateSuccess, Code: -1, TxnID: txn, Attempt: a,
			Message: "confirmed by status enquiry: success"})
		e.resolved(row, ledger.StateSuccess)
	case aop.VerdictRefunded:
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateRefunded, Code: -1, TxnID: txn, Attempt: a,
			Message: "status enquiry: charged, then refunded to the wallet"})
		e.resolved(row, ledger.StateRefunded)
	case aop.VerdictFailed:
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StateFailed, Code: -1, TxnID: txn, Attempt: a,
			Message: "status enquiry: failed (nothing taken, or returned to the wallet)"})
		e.resolved(row, ledger.StateFailed)
	case aop.VerdictPending:
		e.record(w, ledger.Update{Line: row.Line, To: ledger.StatePending, Code: -1, TxnID: txn, Attempt: a,
			Message: "status enquiry: still pending at the provider"})
	case aop.VerdictNotFound:
		if row.State != ledger.StateUnknown {
			// The provider said it had this referenceid (18) or accepted it
			// (0) yet cannot find it now: wait for it, never re-send.
			e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Attempt: a,
				Message: fmt.Sprintf("status enquiry found no record although the provider answered %s: check again later", row.State)})
			return
		}
		e.record(w, ledger.Update{Line: row.Line, Code: -1, Attempt: a})
		// The provider never recorded it: sending again under the SAME
		// referenceid is safe, since a duplicate would answer 18.
		tk, err := e.lim.Wait(ctx)
		if err != nil || e.stopping() || !e.leaseOK() {
			return // still unknown: the next resolve asks again
		}
		if err := w.MarkInflight(ctx, row.Line); err != nil {
			if errors.Is(err, ledger.ErrLeaseLost) {
				e.ledgerFailed(err)
			}
			return // nothing went: tk keeps counting from when it was let through
		}
		e.deliver(ctx, w, row, tk)
	case aop.VerdictAuth:
		e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Message: row.Message, Attempt: a})
		e.stop(&StopError{Reason: "auth", Detail: fmt.Sprintf("status enquiry: authentication failed after a credential refresh (HTTP %d, code %d)", st.HTTPStatus, st.Code),
			Hint: "check the token or JWT secret and partner id"})
	default: // unknown, or retries exhausted: ask again next round
		e.record(w, ledger.Update{Line: row.Line, To: row.State, Code: -1, Attempt: a,
			Message: "status enquiry gave no usable answer: " + st.Message})
	}
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
