package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// retried checks the rows of a file that retry a row of an earlier batch
// (the retryof column export writes) against the ledger, before any is
// recorded: the row retried, and each it retried in turn, must be in this
// ledger and not paid. A retry file run on another ledger (a mistyped
// --ledger) would pay rows this ledger knows nothing of, and a retry of a
// row that has since been found charged (resolve, a statement) would pay
// it twice. That two rows do not retry the same one is the ledger's own
// check, at the insert.
type retried struct {
	l    ledger.Reader
	w    *ledger.RetryWalker
	self string // the batch being recorded
}

func newRetried(l ledger.Reader, self string) *retried {
	return &retried{l: l, w: ledger.NewRetryWalker(l), self: self}
}

// check gives each sendable row whose retried row will not do its
// problem; it is then recorded rejected, its cells kept.
func (rt *retried) check(ctx context.Context, rows []ledger.IngestRow) error {
	for i := range rows {
		r := &rows[i]
		if r.Problem != nil || r.RetryOf == "" {
			continue
		}
		code, reason, err := rt.reason(ctx, r.RetryOf)
		if err != nil {
			return fmt.Errorf("line %d: %w", r.Line, err)
		}
		if reason != "" {
			r.Problem = &ledger.Problem{Code: code, Column: colRetryOf.String(),
				Message: fmt.Sprintf("line %d, column %q, value %q: %s", r.Line, colRetryOf.String(), r.RetryOf, reason)}
			r.Request = nil
		}
	}
	return nil
}

// Error codes of a row the run refuses for the row it retries: one not to
// pay again (or not there), and one of a batch this ledger does not hold
// (ledger.RefusedForRetry).
const (
	CodeBadRetryOf     = ledger.CodeRetryRefused
	CodeRetryElsewhere = ledger.CodeRetryNotInLedger
)

// reason says why the row named by of ("BATCH:LINE", checked by the
// reader) must not be paid again from this file, with its error code, or
// "" when it may. Every row on the way back to the first payment must be
// one to pay again (ledger.RetryWalker).
func (rt *retried) reason(ctx context.Context, of string) (code, reason string, err error) {
	if id, _, _ := ledger.SplitRetryOf(of); id == rt.self {
		return CodeBadRetryOf, "a row of this same batch: a retry retries a row of an earlier batch", nil
	}
	k, blocked, err := rt.w.Blocker(ctx, of)
	if err != nil || !blocked {
		return "", "", err
	}
	at := fmt.Sprintf("batch %s line %d", k.BatchID, k.Line)
	if k.Depth > 0 {
		at += " (the payment behind the row it retries, itself a retry)"
	}
	switch {
	case errors.Is(k.Missing, ledger.ErrNoBatch) && k.Depth == 0:
		return CodeRetryElsewhere, fmt.Sprintf("this ledger holds no batch %s: a file exported to be sent again goes to the ledger of the batch it came from (--ledger)", k.BatchID), nil
	case errors.Is(k.Missing, ledger.ErrNoRow) && k.Depth == 0:
		return CodeBadRetryOf, fmt.Sprintf("batch %s has no row on line %d", k.BatchID, k.Line), nil
	case k.Missing != nil:
		return CodeBadRetryOf, at + " is not in this ledger: whether it was paid since cannot be seen from here; run the file on the ledger that holds it", nil
	}
	switch st := k.Row.State; st {
	case ledger.StateSuccess:
		return CodeBadRetryOf, at + " is success now: it was paid, and sent again from here it would be paid twice", nil
	case ledger.StateQueued, ledger.StateHeld:
		return CodeBadRetryOf, fmt.Sprintf("%s is %s now: it is still that batch's to send, under its own referenceid, when the batch runs again", at, st), nil
	default:
		return CodeBadRetryOf, fmt.Sprintf("%s is %s now: it may have been charged; aopbatch resolve settles it under its own referenceid, and export offers it again only if it failed",
			at, st), nil
	}
}

// recheck checks again, before a run resumes batch b, the rows it has
// still to send that retry another: what they retry may have been found
// charged since they were recorded (a dry run, or a run stopped part way,
// then reconcile). Any such row refuses the run, nothing sent: the row
// must not be sent, and only a person can say what becomes of it.
func (rt *retried) recheck(ctx context.Context, b ledger.Batch) error {
	// Only a file with the column has retries: any other batch, however
	// big, is not read here.
	if !slices.ContainsFunc(b.Header, func(h string) bool { return ledger.NormalizeColumn(h) == colRetryOf.String() }) {
		return nil
	}
	var bad []string
	err := rt.l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		if r.RetryOf == "" || (r.State != ledger.StateQueued && r.State != ledger.StateHeld) {
			return nil
		}
		_, reason, err := rt.reason(ctx, r.RetryOf)
		if err != nil {
			return fmt.Errorf("line %d: %w", r.Line, err)
		}
		if reason != "" && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("line %d retries %s, and %s", r.Line, r.RetryOf, reason))
		}
		return nil
	})
	if err != nil || len(bad) == 0 {
		return err
	}
	return fmt.Errorf("batch %s has rows still to send that pay again a row found paid or unsettled since they were recorded: %s; nothing was sent. "+
		"While nothing of the batch was sent, aopbatch ledger drop --batch %s removes it, and export offers again what is still to pay",
		b.ID, strings.Join(bad, "; "), b.ID)
}

// What becomes of a retry retryPaid keeps from going, for its stop's hint.
const (
	retryPaidQueued  = "it was not sent, nor is anything more of this batch: it stays queued, and a run of the batch is refused while it holds such a row"
	retryPaidUnknown = "it was not sent again: it stays unknown, and resolve asks about it but never sends it while this holds"
)

// retryPaid reports whether row, a retry (its RetryOf set), must not be
// sent now: a row on the way back to its first payment was found charged
// or unsettled since the row was recorded (reconcile, resolve, running
// while this run waited). It then stops the run, saying what became of
// the row (left): a person decides. Asked right before the row goes,
// after its wait for a token. A run ending meanwhile keeps the row from
// going too, without a stop of its own.
func (e *Engine) retryPaid(ctx context.Context, row ledger.Row, left string) bool {
	if row.RetryOf == "" {
		return false
	}
	_, reason, err := e.retryWalk.reason(ctx, row.RetryOf)
	if err == nil && reason == "" {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	if err != nil {
		// Not known to be paid, but not known not to be: not sent.
		reason = "it could not be checked: " + err.Error()
	}
	e.stop(&StopError{Reason: StopRetryPaid,
		Detail: fmt.Sprintf("line %d retries %s, and %s", row.Line, row.RetryOf, reason),
		Hint:   left + ". Look up the row it retries; if this one must still be paid, send it by hand"})
	return true
}
