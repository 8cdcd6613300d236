package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// runLedger dispatches the ledger's own subcommands.
func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "usage: aopbatch ledger copy --from LEDGER --to LEDGER [--batch ID]")
		fmt.Fprintln(stderr, "       aopbatch ledger archive --before DATE --out FILE [--ledger LEDGER]")
		fmt.Fprintln(stderr, "       aopbatch ledger drop --batch ID [--ledger LEDGER]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "  copy     copy batches between ledgers (a SQLite file, a postgres:// URL), checked by counts and sums")
		fmt.Fprintln(stderr, "  archive  move finished batches to a compressed file that report, status and export read")
		fmt.Fprintln(stderr, "  drop     delete a batch nothing of which was ever sent (a dry run), freeing its referenceids")
		if len(args) == 0 {
			return &exitError{code: exitStart}
		}
		return nil
	}
	switch args[0] {
	case "copy":
		return runLedgerCopy(ctx, args[1:], stdout, stderr)
	case "archive":
		return runLedgerArchive(ctx, args[1:], stdout, stderr)
	case "drop":
		return runLedgerDrop(ctx, args[1:], stdout, stderr)
	}
	return start(fmt.Errorf("ledger: unknown subcommand %q (copy, archive or drop; see aopbatch ledger -h)", args[0]))
}

// runLedgerDrop deletes a batch nothing of which was sent: a dry run of a
// file that was then corrected holds the file's referenceids, and the
// corrected file's rows would all be conflicts.
func runLedgerDrop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var batchID string
	fs := newFlagSet("ledger drop", "ledger drop --batch ID [--ledger LEDGER]",
		"aopbatch ledger drop --ledger /var/lib/aopbatch/aopbatch.db --batch b8156c06e797d4229", stderr)
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&batchID, "batch", "", "the batch to delete (required; never latest: name it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	noteLedger(textLog(stderr), *ledgerPath, false)
	if batchID == "" || batchID == "latest" {
		return start(errors.New("ledger drop: --batch ID is required, by its id (see aopbatch status)"))
	}
	if isArchive(*ledgerPath) {
		return start(fmt.Errorf("ledger drop: %s is an archive: nothing in it is deleted", *ledgerPath))
	}
	l, err := openLedgerFile(ctx, *ledgerPath)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	b, err := l.Batch(ctx, batchID)
	if err != nil {
		return start(err)
	}
	c, err := l.Counts(ctx, b.Seq)
	if err != nil {
		return start(err)
	}
	// Its rows retried by another batch: dropped, those retries would
	// retry a row the ledger no longer holds, offered and sent by nothing.
	if by, err := ledger.RetriedBy(ctx, l, b.ID); err != nil {
		return start(err)
	} else if len(by) > 0 {
		return start(fmt.Errorf("batch %s is kept: batches retry its rows (%s); drop them first, if nothing of them was sent either", b.ID, strings.Join(by, ", ")))
	}
	owner := ledger.NewOwner(newRunID())
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, owner, holdLease); err != nil {
		return start(describeStartError("", err))
	}
	if err := l.DropUnsent(ctx, b.Seq, owner); err != nil {
		_ = l.Release(context.WithoutCancel(ctx), b.ID, owner)
		if errors.Is(err, ledger.ErrBatchSent) {
			return start(fmt.Errorf("batch %s is kept: rows of it were sent, or may have been, and it is the record of what was paid "+
				"(aopbatch status shows its rows; a finished batch can be moved away with aopbatch ledger archive)", b.ID))
		}
		return start(err)
	}
	fmt.Fprintf(stdout, "dropped batch %s (%s): %d rows, none ever sent; their referenceids are free\n", b.ID, b.Source, c.Total().Rows)
	return nil
}

// batchList collects repeated --batch flags.
type batchList []string

func (b *batchList) String() string     { return strings.Join(*b, ",") }
func (b *batchList) Set(v string) error { *b = append(*b, v); return nil }

func runLedgerCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		from, to string
		batches  batchList
	)
	fs := newFlagSet("ledger copy", "ledger copy --from LEDGER --to LEDGER [--batch ID]...",
		"PGPASSWORD=... aopbatch ledger copy --from aopbatch.db --to postgres://aopbatch@db.internal/aopbatch", stderr)
	fs.StringVar(&from, "from", "", "ledger to copy from: a SQLite file or a postgres:// URL (required)")
	fs.StringVar(&to, "to", "", "ledger to copy into, created if it is a new SQLite file (required)")
	fs.Var(&batches, "batch", "copy only this batch (repeatable; default: every batch)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if from == "" || to == "" {
		return start(errors.New("ledger copy: --from and --to are both required (see aopbatch ledger copy -h)"))
	}
	src, err := openLedgerFile(ctx, from)
	if err != nil {
		return start(err)
	}
	defer src.Close()
	dst, err := openLedger(ctx, to, ledgerOptions{create: true})
	if err != nil {
		return start(err)
	}
	defer dst.Close()
	if src.Location() == dst.Location() {
		return start(fmt.Errorf("ledger copy: --from and --to are the same ledger (%s)", src.Location()))
	}
	o := ledger.CopyOptions{}
	if len(batches) > 0 {
		o.IDs = batches
		// A batch goes with the batches that retry its rows: without
		// them, its failed rows are retried by nothing there, and a retry
		// file of them run there pays them again.
		left, err := ledger.RetriesLeftBehind(ctx, src, dst, batches)
		if err != nil {
			return start(err)
		}
		if len(left) > 0 {
			return start(fmt.Errorf("ledger copy: batches of %s retry rows of the batches named, and are neither named nor in %s: %s; "+
				"copy them too (another --batch each), or a retry file of those rows run on %s would pay them again; nothing was copied",
				src.Location(), dst.Location(), strings.Join(left, ", "), dst.Location()))
		}
	}
	if _, archive := src.(*archiveStore); archive {
		o.ArchivedAs = absPath(src.Location()) // as ledger archive names it
	} else {
		// Each batch's lease while it is copied: no run of it changes what
		// is being read (on a shared ledger, one that does is found by the
		// counts compared at the end).
		owner := ledger.NewOwner(newRunID())
		o.Hold = func(ctx context.Context, b ledger.Batch) (func(), error) {
			if _, err := src.Acquire(ctx, ledger.NewBatch{ID: b.ID}, owner, holdLease); err != nil {
				return nil, err
			}
			return func() { _ = src.Release(context.WithoutCancel(ctx), b.ID, owner) }, nil
		}
	}
	res, err := ledger.Copy(ctx, src, dst, o)
	for _, id := range res.Already {
		fmt.Fprintf(stdout, "batch %s is in %s already, the same rows in the same states: left as it is\n", id, dst.Location())
	}
	for _, b := range res.Batches {
		t := b.Counts.Total()
		note := ""
		if b.Archived != "" {
			note = " (archived in " + b.Archived + ": its referenceids stay held)"
		}
		fmt.Fprintf(stdout, "copied batch %s: %d rows, %s, %d attempts%s\n", b.ID, t.Rows, ledger.FormatRupees(t.Paise), b.Attempts, note)
	}
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrBatchExists):
			err = fmt.Errorf("%w; copy the others with --batch", err)
		case errors.Is(err, ledger.ErrCopyMismatch), errors.Is(err, ledger.ErrChanged):
			err = fmt.Errorf("%w: that batch was not copied (nothing of it is left in %s); the source %s is untouched", err, dst.Location(), src.Location())
		case errors.Is(err, ledger.ErrBatchLocked):
			err = fmt.Errorf("%w: copy it when that run is done", err)
		}
		return start(fmt.Errorf("ledger copy: %w", err))
	}
	fmt.Fprintf(stdout, "note: the batches are now in both ledgers; run each, and send its failed rows again, from one of them only "+
		"(the provider's referenceids keep a batch run from both from paying twice, but not a retry file, whose rows go out under new referenceids)\n")
	fmt.Fprintf(stdout, "copied %d %s from %s to %s: %d rows, %s, %d attempts; counts and sums by state agree in both ledgers\n",
		len(res.Batches), plural(len(res.Batches), "batch", "batches"), src.Location(), dst.Location(), res.Rows, ledger.FormatRupees(res.Paise), res.Attempts)
	return nil
}
