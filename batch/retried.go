package batch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// retried checks the rows of a file that retry a row of an earlier batch
// (the retryof column export writes) against the ledger, before any is
// recorded: the row retried must be in this ledger and not paid. A retry
// file run on another ledger (a mistyped --ledger) would pay rows this
// ledger knows nothing of, and a retry of a row that has since been found
// charged (resolve, a statement) would pay it twice. That two rows do not
// retry the same one is the ledger's own check, at the insert.
type retried struct {
	l       ledger.Reader
	self    string                   // the batch being recorded
	batches map[string]*ledger.Batch // by id; nil: not in this ledger
}

func newRetried(l ledger.Reader, self string) *retried {
	return &retried{l: l, self: self, batches: map[string]*ledger.Batch{}}
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

// Error codes of a row refused for the row it retries: one not to pay
// again (or not there), and one of a batch this ledger does not hold.
const (
	CodeBadRetryOf     = "bad_retryof"
	CodeRetryElsewhere = "retry_not_in_ledger"
)

// reason says why the row named by of ("BATCH:LINE", checked by the
// reader) must not be paid again from this file, with its error code, or
// "" when it may.
func (rt *retried) reason(ctx context.Context, of string) (code, reason string, err error) {
	i := strings.LastIndexByte(of, ':')
	id := of[:i]
	line, _ := strconv.Atoi(of[i+1:])
	if id == rt.self {
		return CodeBadRetryOf, "a row of this same batch: a retry retries a row of an earlier batch", nil
	}
	b, ok := rt.batches[id]
	if !ok {
		got, err := rt.l.Batch(ctx, id)
		switch {
		case errors.Is(err, ledger.ErrNoBatch):
		case err != nil:
			return "", "", err
		default:
			b = &got
		}
		rt.batches[id] = b
	}
	if b == nil {
		return CodeRetryElsewhere, fmt.Sprintf("this ledger holds no batch %s: a file exported to be sent again goes to the ledger of the batch it came from (--ledger)", id), nil
	}
	row, err := rt.l.Row(ctx, b.Seq, line)
	if errors.Is(err, ledger.ErrNoRow) {
		return CodeBadRetryOf, fmt.Sprintf("batch %s has no row on line %d", id, line), nil
	}
	if err != nil {
		return "", "", err
	}
	switch row.State {
	case ledger.StateFailed, ledger.StateRefunded, ledger.StateRejected, ledger.StateConflict:
		return "", "", nil
	case ledger.StateSuccess:
		return CodeBadRetryOf, fmt.Sprintf("batch %s line %d is success now: it was paid, and sent again from here it would be paid twice", id, line), nil
	case ledger.StateQueued, ledger.StateHeld:
		return CodeBadRetryOf, fmt.Sprintf("batch %s line %d is %s now: it is still that batch's to send, under its own referenceid, when the batch runs again", id, line, row.State), nil
	}
	return CodeBadRetryOf, fmt.Sprintf("batch %s line %d is %s now: it may have been charged; aopbatch resolve settles it under its own referenceid, and export offers it again only if it failed",
		id, line, row.State), nil
}
