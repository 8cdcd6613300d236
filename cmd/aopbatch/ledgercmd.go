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
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "  copy     move batches between ledgers (a SQLite file, a postgres:// URL), checked by counts and sums")
		fmt.Fprintln(stderr, "  archive  move finished batches to a compressed file that report, status and export read")
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
	}
	return start(fmt.Errorf("ledger: unknown subcommand %q (try aopbatch ledger copy)", args[0]))
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
	var ids []string
	if len(batches) > 0 {
		ids = batches
	}
	res, err := ledger.Copy(ctx, src, dst, ids)
	for _, b := range res.Batches {
		t := b.Counts.Total()
		fmt.Fprintf(stdout, "copied batch %s: %d rows, %s, %d attempts\n", b.ID, t.Rows, ledger.FormatRupees(t.Paise), b.Attempts)
	}
	if err != nil {
		switch {
		case errors.Is(err, ledger.ErrBatchExists):
			err = fmt.Errorf("%w in %s: copy the others with --batch, or remove it there first", err, dst.Location())
		case errors.Is(err, ledger.ErrCopyMismatch):
			err = fmt.Errorf("%w: the copy is not to be trusted; the source %s is untouched", err, src.Location())
		}
		return start(fmt.Errorf("ledger copy: %w", err))
	}
	fmt.Fprintf(stdout, "copied %d batches from %s to %s: %d rows, %s, %d attempts; counts and sums by state agree in both ledgers\n",
		len(res.Batches), src.Location(), dst.Location(), res.Rows, ledger.FormatRupees(res.Paise), res.Attempts)
	return nil
}
