package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// CopyResult says what Copy moved, batch by batch.
type CopyResult struct {
	Batches  []CopiedBatch
	Rows     int64
	Paise    int64
	Attempts int64
}

// CopiedBatch is one batch Copy moved, with the tallies both ledgers agree on.
type CopiedBatch struct {
	ID       string
	Counts   Counts
	Attempts int64
}

// copyChunk is how many rows or attempts go to the destination at once.
const copyChunk = 2048

// Copy moves batches from one ledger to another, losslessly: every row
// with its state, amounts, messages, times and provider ids, and every
// logged attempt. ids picks the batches (nil: all). Only ready batches
// with nothing in flight are copied: a batch being run is settled first.
// After each batch it checks that both ledgers hold the same counts and
// sums by state and the same number of attempts, and it stops at the first
// that differs; a batch half copied is removed from the destination.
func Copy(ctx context.Context, from Reader, to Store, ids []string) (CopyResult, error) {
	var res CopyResult
	all, err := from.Batches(ctx)
	if err != nil {
		return res, err
	}
	var pick []Batch
	if ids == nil {
		for _, b := range all {
			if b.Archived == "" { // what is left of it here is not the batch
				pick = append(pick, b)
			}
		}
	} else {
		for _, id := range ids {
			i := slices.IndexFunc(all, func(b Batch) bool { return b.ID == id })
			if i < 0 {
				return res, fmt.Errorf("batch %q: %w", id, ErrNoBatch)
			}
			pick = append(pick, all[i])
		}
	}
	for _, b := range pick {
		cb, err := copyBatch(ctx, from, to, b)
		if err != nil {
			return res, err
		}
		res.Batches = append(res.Batches, cb)
		tot := cb.Counts.Total()
		res.Rows += tot.Rows
		res.Paise += tot.Paise
		res.Attempts += cb.Attempts
	}
	return res, nil
}

func copyBatch(ctx context.Context, from Reader, to Store, b Batch) (CopiedBatch, error) {
	cb := CopiedBatch{ID: b.ID}
	if !b.Ready {
		return cb, fmt.Errorf("batch %s was never fully recorded: run its file again, or leave it out", b.ID)
	}
	if b.Archived != "" {
		return cb, fmt.Errorf("batch %s (in %s): %w: copy it from there", b.ID, b.Archived, ErrBatchArchived)
	}
	want, err := from.Counts(ctx, b.Seq)
	if err != nil {
		return cb, err
	}
	if t := want[StateInflight]; t.Rows > 0 {
		return cb, fmt.Errorf("batch %s has %d rows in flight: let its run finish, or run aopbatch resolve, then copy", b.ID, t.Rows)
	}
	im, err := to.ImportBatch(ctx, b)
	if err != nil {
		return cb, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = im.Abort(context.WithoutCancel(ctx))
		}
	}()
	rows := make([]Row, 0, copyChunk)
	flushRows := func() error {
		if len(rows) == 0 {
			return nil
		}
		err := im.Rows(ctx, rows)
		rows = rows[:0]
		return err
	}
	if err := from.EachRow(ctx, b.Seq, func(r *Row) error {
		row := *r
		row.Request = bytes.Clone(r.Request)
		row.Raw = slices.Clone(r.Raw)
		if rows = append(rows, row); len(rows) == copyChunk {
			return flushRows()
		}
		return nil
	}); err != nil {
		return cb, err
	}
	if err := flushRows(); err != nil {
		return cb, err
	}
	as := make([]AttemptRow, 0, copyChunk)
	var nAttempts int64
	if err := from.EachAttempt(ctx, b.Seq, func(a *AttemptRow) error {
		nAttempts++
		if as = append(as, *a); len(as) == copyChunk {
			err := im.Attempts(ctx, as)
			as = as[:0]
			return err
		}
		return nil
	}); err != nil {
		return cb, err
	}
	if len(as) > 0 {
		if err := im.Attempts(ctx, as); err != nil {
			return cb, err
		}
	}
	if err := im.Finish(ctx); err != nil {
		return cb, err
	}
	ok = true
	// Check what the destination now holds against what was read.
	nb, err := to.Batch(ctx, b.ID)
	if err != nil {
		return cb, err
	}
	got, err := to.Counts(ctx, nb.Seq)
	if err != nil {
		return cb, err
	}
	var gotAttempts int64
	if err := to.EachAttempt(ctx, nb.Seq, func(*AttemptRow) error { gotAttempts++; return nil }); err != nil {
		return cb, err
	}
	if !maps.Equal(got, want) || gotAttempts != nAttempts || nb.RowsTotal != b.RowsTotal {
		return cb, fmt.Errorf("batch %s copied but the ledgers disagree: %v and %d attempts there, %v and %d here: %w",
			b.ID, want, nAttempts, got, gotAttempts, ErrCopyMismatch)
	}
	cb.Counts, cb.Attempts = got, gotAttempts
	return cb, nil
}

// ErrCopyMismatch means a copied batch's counts, sums or attempts differ
// between the two ledgers.
var ErrCopyMismatch = errors.New("copy does not match its source")
