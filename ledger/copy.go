package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// CopyResult says what Copy moved, batch by batch.
type CopyResult struct {
	Batches []CopiedBatch
	// Already are the batches the destination held already, the same:
	// left as they are (a copy run again after one that stopped part way).
	Already  []string
	Rows     int64
	Paise    int64
	Attempts int64
}

// CopiedBatch is one batch Copy moved, with the tallies both ledgers agree on.
type CopiedBatch struct {
	ID       string
	Archived string // the batch's archive, when it was archived in the source
	Counts   Counts
	Attempts int64
}

// CopyOptions tune Copy.
type CopyOptions struct {
	// IDs picks the batches; nil copies every batch.
	IDs []string
	// Hold, when not nil, keeps runs out of a source batch while it is
	// copied (its lease), and returns how to let them back in. Archived
	// batches, which nothing changes, are not held.
	Hold func(ctx context.Context, b Batch) (release func(), err error)
	// ArchivedAs, copying from an archive, names it: each batch arrives
	// archived there, as it is in the live ledger it came from. The
	// batches that retried its rows are in that live ledger, not in the
	// archive: arrived as a batch of its own, its failed rows would be
	// offered by its export again, and paid twice.
	ArchivedAs string
}

// copyChunk is how many rows or attempts go to the destination at once.
const copyChunk = 2048

// Copy moves batches from one ledger to another, losslessly: every row
// with its state, amounts, messages, times and provider ids, and every
// logged attempt. An archived batch goes as what is left of it (its rows'
// states, amounts and referenceids, which stay held in the destination,
// and its content hash, which keeps its file from being paid again), with
// the name of its archive. Only ready batches with nothing in flight are
// copied. Before a batch is made ready in the destination, both ledgers'
// counts and sums by state and attempt counts are compared, and the
// source's again with what it held when the copy began; a batch that
// differs is removed from the destination and Copy stops
// (ErrCopyMismatch, ErrChanged).
func Copy(ctx context.Context, from Reader, to Store, o CopyOptions) (CopyResult, error) {
	var res CopyResult
	all, err := from.Batches(ctx)
	if err != nil {
		return res, err
	}
	pick := all
	if o.IDs != nil {
		pick = nil
		for _, id := range o.IDs {
			i := slices.IndexFunc(all, func(b Batch) bool { return b.ID == id })
			if i < 0 {
				return res, fmt.Errorf("batch %q: %w", id, ErrNoBatch)
			}
			pick = append(pick, all[i])
		}
	}
	for _, b := range pick {
		if o.ArchivedAs != "" && b.Archived == "" {
			b.Archived = o.ArchivedAs
		}
		if same, err := alreadyThere(ctx, from, to, b); err != nil {
			return res, err
		} else if same {
			res.Already = append(res.Already, b.ID)
			continue
		}
		cb, err := copyHeld(ctx, from, to, b, o.Hold)
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

// alreadyThere reports whether the destination holds batch b already as
// the source does: ready, the same content and archive, and the same
// counts and sums by state. One there, ready, that differs is refused
// with ErrBatchExists, saying how: a person decides which ledger is the
// record of it, and nothing but a dry run's batch can be taken out of a
// ledger. One there not ready (a copy cut short, a recording abandoned)
// is for copyBatch and ImportBatch to decide.
func alreadyThere(ctx context.Context, from Reader, to Store, b Batch) (bool, error) {
	got, err := to.Batch(ctx, b.ID)
	if errors.Is(err, ErrNoBatch) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !got.Ready || !b.Ready {
		return false, nil
	}
	var how string
	switch {
	case got.ContentHash != b.ContentHash || got.RowsTotal != b.RowsTotal:
		how = fmt.Sprintf("recorded from another file (%s there, %s in %s)", got.Source, b.Source, from.Location())
	case got.Archived != b.Archived:
		how = fmt.Sprintf("archived in only one of the two ledgers (there %q, in %s %q)", got.Archived, from.Location(), b.Archived)
	default:
		want, err := from.Counts(ctx, b.Seq)
		if err != nil {
			return false, err
		}
		have, err := to.Counts(ctx, got.Seq)
		if err != nil {
			return false, err
		}
		if maps.Equal(want, have) { // as copyBatch compares them: no store lists an empty state
			return true, nil
		}
		how = fmt.Sprintf("with its rows in other states than in %s (there %s; in %s %s): it went on in one of them after it was copied",
			from.Location(), tallies(have), from.Location(), tallies(want))
	}
	return false, fmt.Errorf("batch %s is in %s already, %s; a copy never writes over a batch: "+
		"see which is the record of what was paid (aopbatch status --batch %s --ledger each) and run it from that ledger only: %w",
		b.ID, to.Location(), how, b.ID, ErrBatchExists)
}

// tallies writes a batch's rows by state, in the states' order: "192
// success, 4 failed".
func tallies(c Counts) string {
	var parts []string
	for _, s := range States {
		if t := c[s]; t.Rows > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", t.Rows, s))
		}
	}
	if len(parts) == 0 {
		return "no rows"
	}
	return strings.Join(parts, ", ")
}

// copyHeld copies b while holding it, when there is a way to.
func copyHeld(ctx context.Context, from Reader, to Store, b Batch, hold func(context.Context, Batch) (func(), error)) (CopiedBatch, error) {
	if hold != nil && b.Archived == "" {
		release, err := hold(ctx, b)
		if err != nil {
			return CopiedBatch{ID: b.ID}, err
		}
		defer release()
	}
	return copyBatch(ctx, from, to, b)
}

func copyBatch(ctx context.Context, from Reader, to Store, b Batch) (cb CopiedBatch, err error) {
	cb = CopiedBatch{ID: b.ID, Archived: b.Archived}
	if !b.Ready {
		return cb, fmt.Errorf("batch %s was never fully recorded: run its file again, or leave it out", b.ID)
	}
	want, err := from.Counts(ctx, b.Seq)
	if err != nil {
		return cb, err
	}
	if t := want[StateInflight]; t.Rows > 0 {
		return cb, fmt.Errorf("batch %s has %d rows in flight: let its run finish, or run aopbatch resolve, then copy", b.ID, t.Rows)
	}
	if err := coversCutShort(ctx, from, to, b); err != nil {
		return cb, err
	}
	im, err := to.ImportBatch(ctx, b)
	if err != nil {
		return cb, err
	}
	done := false
	defer func() {
		if !done {
			if aerr := im.Abort(context.WithoutCancel(ctx)); aerr != nil {
				err = errors.Join(err, fmt.Errorf("remove the half-copied batch %s: %w", b.ID, aerr))
			}
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
		// r is reused between calls. An archived row's empty body may
		// read back as nil: the destination keeps it a body
		// (Row.StoredRequest), and with it the referenceid held.
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
	// Check before the batch is ready in the destination: a copy that
	// differs is removed, never left where a run could send from it.
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
	if !maps.Equal(got, want) || gotAttempts != nAttempts {
		return cb, fmt.Errorf("batch %s: %v and %d attempts there, %v and %d here: %w",
			b.ID, want, nAttempts, got, gotAttempts, ErrCopyMismatch)
	}
	now, err := from.Counts(ctx, b.Seq)
	if err != nil {
		return cb, err
	}
	if !maps.Equal(now, want) {
		return cb, fmt.Errorf("batch %s: %v when the copy began, %v now: %w", b.ID, want, now, ErrChanged)
	}
	if err := im.Finish(ctx); err != nil {
		return cb, err
	}
	done = true
	cb.Counts, cb.Attempts = got, gotAttempts
	return cb, nil
}

// coversCutShort refuses, with ErrBatchExists, to copy b over the batch
// of the same id and content that the destination holds not ready (a
// copy cut short, which ImportBatch replaces) unless the source accounts
// for every row of it that was sent, or may have been: the same row there,
// in the same state or moved on since, with no fewer attempts. Only then
// is nothing lost by the replacement. A source holding the batch as it was
// before (a backup, another host's older ledger) would bring a paid row
// back queued, for a run to send again with no status enquiry first.
func coversCutShort(ctx context.Context, from Reader, to Store, b Batch) error {
	got, err := to.Batch(ctx, b.ID)
	if errors.Is(err, ErrNoBatch) {
		return nil
	}
	if err != nil {
		return err
	}
	if got.Ready || got.ContentHash != b.ContentHash {
		return nil // ImportBatch refuses it as it is
	}
	// The destination's sent rows, then one pass over the source: a row
	// read at a time would be a round trip per sent row on PostgreSQL.
	type sentRow struct {
		ref      string
		state    State
		attempts int
		updated  time.Time
	}
	sent := map[int]sentRow{}
	err = to.EachRow(ctx, got.Seq, func(r *Row) error {
		switch r.State {
		case StateQueued, StateHeld, StateRejected, StateConflict:
			if r.Attempts == 0 && r.FirstSent.IsZero() {
				return nil // never sent: whatever the source holds of it
			}
		}
		sent[r.Line] = sentRow{r.ReferenceID, r.State, r.Attempts, r.Updated}
		return nil
	})
	if err != nil || len(sent) == 0 {
		return err
	}
	err = from.EachRow(ctx, b.Seq, func(sr *Row) error {
		r, ok := sent[sr.Line]
		if !ok {
			return nil
		}
		delete(sent, sr.Line)
		if sr.ReferenceID != r.ref || sr.Attempts < r.attempts ||
			(sr.State != r.state && !sr.Updated.After(r.updated)) || sr.Updated.Before(r.updated) {
			return fmt.Errorf("batch %s, left not ready in %s by a copy cut short, holds line %d %s after %d attempts, "+
				"and %s holds it %s after %d: an older ledger than the one the copy was cut short from? "+
				"copy from that one: %w", b.ID, to.Location(), sr.Line, r.state, r.attempts,
				from.Location(), sr.State, sr.Attempts, ErrBatchExists)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(sent) > 0 {
		line := slices.Min(slices.Collect(maps.Keys(sent)))
		return fmt.Errorf("batch %s, left not ready in %s by a copy cut short, holds line %d (%s), which was sent: "+
			"%s has no such line: %w", b.ID, to.Location(), line, sent[line].state, from.Location(), ErrBatchExists)
	}
	return nil
}

// ErrCopyMismatch means a copied batch's counts, sums or attempts differ
// between the two ledgers.
var ErrCopyMismatch = errors.New("copy does not match its source")

// RetriesLeftBehind names the batches of from, neither among ids nor in
// to, whose rows retry rows of the batches ids names (their retryof):
// "retry-1 (retries orig line 2)". Copied without them, the destination
// holds those rows as failed and retried by nothing, and a retry file of
// them run there would pay them again.
func RetriesLeftBehind(ctx context.Context, from Reader, to Reader, ids []string) ([]string, error) {
	return retriedBy(ctx, from, ids, func(id string) (bool, error) {
		if _, err := to.Batch(ctx, id); err == nil {
			return false, nil
		} else if !errors.Is(err, ErrNoBatch) {
			return false, err
		}
		return true, nil
	})
}

// RetriedBy names the other batches of l whose rows retry rows of batch
// id: "retry-1 (retries orig line 2)". Dropped while they are there,
// their rows would retry a row the ledger no longer holds, which nothing
// then offers or may send.
func RetriedBy(ctx context.Context, l Reader, id string) ([]string, error) {
	return retriedBy(ctx, l, []string{id}, func(string) (bool, error) { return true, nil })
}

// retriedBy names the batches of l, not among ids and that count, whose
// rows retry rows of the batches ids names, with the first such row.
func retriedBy(ctx context.Context, l Reader, ids []string, count func(id string) (bool, error)) ([]string, error) {
	picked := make(map[string]bool, len(ids))
	for _, id := range ids {
		picked[id] = true
	}
	all, err := l.Batches(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, b := range all {
		if picked[b.ID] {
			continue
		}
		if ok, err := count(b.ID); err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		first := ""
		err := l.EachRow(ctx, b.Seq, func(r *Row) error {
			if id, line, ok := SplitRetryOf(r.RetryOf); first == "" && ok && picked[id] {
				first = fmt.Sprintf("%s (retries %s line %d)", b.ID, id, line)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if first != "" {
			out = append(out, first)
		}
	}
	return out, nil
}
