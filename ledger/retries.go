package ledger

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
)

// maxRetryChain bounds the retries of retries a RetryWalker follows back
// to the first payment: a chain is as long as the times a row was
// exported again, and export cannot make a loop.
const maxRetryChain = 64

// SplitRetryOf splits a retryof, "BATCH:LINE", at its last colon (a batch
// id may hold one); ok is false when it has none or LINE is no number.
func SplitRetryOf(of string) (batch string, line int, ok bool) {
	i := strings.LastIndexByte(of, ':')
	if i < 0 {
		return "", 0, false
	}
	line, err := strconv.Atoi(of[i+1:])
	return of[:i], line, err == nil
}

// RetryLink is a row on the way from a retry back to the first payment
// (each row's RetryOf names the next).
type RetryLink struct {
	BatchID string
	Line    int
	Depth   int   // 0: the row the retry names
	Row     Row   // as read; zero when Missing
	Missing error // ErrNoBatch or ErrNoRow: the ledger does not hold it
}

// RetryWalker follows retries back to the first payment, reading each
// batch once. It is safe for concurrent use: a run's workers share one.
type RetryWalker struct {
	l       Reader
	mu      sync.Mutex
	batches map[string]*Batch // by id; nil: not in the ledger
}

// NewRetryWalker reads l.
func NewRetryWalker(l Reader) *RetryWalker {
	return &RetryWalker{l: l, batches: map[string]*Batch{}}
}

// Blocker follows of ("BATCH:LINE") and each row's own RetryOf back to
// the first payment, and returns the first row on the way that must not
// be paid again from a retry of it: one not held by the ledger, or not in
// a state PaysAgain allows. A retry of a retry that failed pays the first
// row too, and that one may have been found charged since. ok is false
// when every row on the way may be paid again.
func (w *RetryWalker) Blocker(ctx context.Context, of string) (link RetryLink, ok bool, err error) {
	for depth := 0; of != ""; depth++ {
		id, line, ok := SplitRetryOf(of)
		if !ok {
			return RetryLink{}, false, errors.New("retryof " + strconv.Quote(of) + " is not BATCH:LINE")
		}
		link = RetryLink{BatchID: id, Line: line, Depth: depth}
		if depth == maxRetryChain {
			link.Missing = ErrNoRow
			return link, true, nil
		}
		b, err := w.batch(ctx, link.BatchID)
		if err != nil {
			return RetryLink{}, false, err
		}
		if b == nil {
			link.Missing = ErrNoBatch
			return link, true, nil
		}
		link.Row, err = w.l.Row(ctx, b.Seq, link.Line)
		if errors.Is(err, ErrNoRow) {
			link.Missing = ErrNoRow
			return link, true, nil
		}
		if err != nil {
			return RetryLink{}, false, err
		}
		if !PaysAgain(link.Row.State) {
			return link, true, nil
		}
		of = link.Row.RetryOf
	}
	return RetryLink{}, false, nil
}

func (w *RetryWalker) batch(ctx context.Context, id string) (*Batch, error) {
	w.mu.Lock()
	b, ok := w.batches[id]
	w.mu.Unlock()
	if ok {
		return b, nil
	}
	got, err := w.l.Batch(ctx, id)
	switch {
	case errors.Is(err, ErrNoBatch):
	case err != nil:
		return nil, err
	default:
		b = &got
	}
	w.mu.Lock()
	w.batches[id] = b
	w.mu.Unlock()
	return b, nil
}
