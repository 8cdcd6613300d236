package batch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/aopbatch/aopbatch/batch/aop"
	"github.com/aopbatch/aopbatch/ledger"
)

// A file sent before from another ledger (a mistyped --ledger opens a new,
// empty one) must not be sent again whole: the rows the provider failed
// without keeping their referenceid would be charged again, and paid
// twice where a person had already sent them under new referenceids.
// Before its first Recharge a run asks the provider about the first rows
// it would send (probeKnown), which moves no money; while it sends, the
// answers to first sends are watched too (knownRefs), for a file sent
// before only in part.

// firstSend says whether row goes to the provider for the first time: it
// is queued, was never sent and never answered. A row declined for the
// account (16, 6, 12) or refused a credential is queued again with the
// code it got; one held after it was sent (an enquiry found no record,
// its operator down) is queued again with its sends.
func firstSend(row ledger.Row) bool {
	return row.State == ledger.StateQueued && row.ResponseCode < 0 && row.Attempts == 0
}

// probeKnown asks the provider about the first KnownRefsWindow rows of
// batch b that would go for the first time, before anything is sent.
// When enough of them are already there (ledger.SentBefore:
// KnownRefsTrip, or half when fewer are asked), the run stops: the file
// was sent before. Nothing remembers the stop but the provider, so every
// run of the batch asks again and stops the same way. An answer that
// says nothing (throttled, unreadable, no credential) counts neither
// way; the first sends' answers are watched all the same. Each enquiry
// is logged as an attempt of its row, which stays queued.
func (e *Engine) probeKnown(ctx, wctx context.Context, b ledger.Batch, w ledger.Writer) error {
	if e.cfg.AllowKnownRefs {
		return nil
	}
	rows, err := e.firstUnsent(ctx, b, e.cfg.KnownRefsWindow)
	if err != nil || len(rows) == 0 {
		return err
	}
	e.cfg.Log.Info("asking the provider about the first rows to send before sending any: a file sent before, from another ledger, stops here",
		"rows", len(rows))
	// The first alone: a refused credential stops the run after one
	// request, not one for each row.
	var known atomic.Int64
	if e.askKnown(ctx, wctx, w, rows[0]) {
		known.Add(1)
	}
	var wg sync.WaitGroup
	for _, row := range rows[1:] {
		if e.stopping() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e.askKnown(ctx, wctx, w, row) {
				known.Add(1)
			}
		}()
	}
	wg.Wait()
	if s := e.Stopped(); s != nil {
		return s
	}
	if n := known.Load(); ledger.SentBefore(int(n), len(rows), e.cfg.KnownRefsTrip) {
		e.stop(&StopError{Reason: StopKnownRefs,
			Detail: fmt.Sprintf("before sending anything, status enquiries found %d of the first %d rows to send already at the provider: "+
				"this file, or one with its referenceids, was sent before, most likely from another ledger", n, len(rows)),
			Hint: knownRefsHint})
		return e.Stopped()
	}
	return nil
}

// firstUnsent returns the first n queued rows of batch b, in line order,
// that would go for the first time, read as sending reads them (Queued:
// what it needs, and whether the row was sent or answered).
func (e *Engine) firstUnsent(ctx context.Context, b ledger.Batch, n int) ([]ledger.Row, error) {
	var out []ledger.Row
	after := 0
	for len(out) < n {
		page, err := e.l.Queued(ctx, b.Seq, after, pageSize)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			if firstSend(r) && len(out) < n {
				out = append(out, r)
			}
		}
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].Line
	}
	return out, nil
}

// askKnown asks the provider about row's referenceid once, through the
// run's limiter, and reports whether the provider holds this row's
// payment under it while this ledger never sent it. A record of another
// payment (another amount, or canumber) is a referenceid used elsewhere
// first, which sending settles (collided), not a file sent before. A
// refused credential stops the run as any enquiry's does.
func (e *Engine) askKnown(ctx, wctx context.Context, w ledger.Writer, row ledger.Row) bool {
	st, at, lat, ok := e.askStatus(ctx, wctx, row.ReferenceID)
	if !ok {
		return false
	}
	if st.MadeRequest() {
		e.record(w, ledger.Update{Line: row.Line, Code: -1, LogAs: ledger.StateQueued, Attempt: &ledger.Attempt{Kind: "status", At: at, Latency: lat,
			HTTPStatus: st.HTTPStatus, Code: st.Code, Class: string(st.Verdict), Message: "before the first send: " + st.Message}})
	}
	if o := enquiryOutcome(st.Verdict); o.Stop != "" {
		e.enquiryStop(o, st)
		return false
	}
	switch st.Verdict {
	case aop.VerdictSuccess, aop.VerdictRefunded, aop.VerdictFailed, aop.VerdictPending:
	default:
		return false
	}
	if otherPayment(row, st.Data) != "" {
		return false
	}
	// Read after the answer: on a shared ledger another process may have
	// claimed the row and sent it meanwhile, which is why the provider
	// has it. A claim is recorded before its send, so a row still queued
	// and never answered now was not sent from this ledger.
	cur, err := e.l.Row(ctx, row.Batch, row.Line)
	return err == nil && firstSend(cur)
}

// knownObserve feeds the answer to a row's first send to knownRefs, when
// the answer says whether the provider knew the referenceid: a timeout or
// a stop says nothing of it.
func (e *Engine) knownObserve(c aop.Class) {
	switch {
	case e.cfg.AllowKnownRefs:
		return
	case c == aop.ClassSuccess, c == aop.ClassPending, c == aop.ClassDuplicate, c == aop.ClassFailed, c == aop.ClassOperatorDown:
	default:
		return
	}
	if !e.known.observe(c == aop.ClassDuplicate) {
		return
	}
	n, of := e.known.state()
	e.stop(&StopError{Reason: StopKnownRefs,
		Detail: fmt.Sprintf("the provider answered 18 (duplicate: it already holds the referenceid) to %d of the last %d rows this run sent for the first time: "+
			"this file, or one with its referenceids, was sent before, most likely from another ledger", n, of),
		Hint: knownRefsHint})
}

// knownRefsHint is what to do about a StopKnownRefs.
const knownRefsHint = "run it with the ledger that sent it (--ledger); every run of this batch on this ledger stops the same way. " +
	"If that ledger is lost and the rest must go, first make sure no failed row of the file was sent again under a new referenceid " +
	"(a row the provider failed without keeping its referenceid is charged when sent again), then run again with --allow-known-refs"
