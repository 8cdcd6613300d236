package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// An archive is a SQLite ledger of the archived batches, gzip-compressed:
// the commands that read a ledger (status, report, export, ledger copy)
// read it as one; none sends from it.

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

// isArchive reports whether the file at path is a compressed archive.
func isArchive(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2)
	n, _ := io.ReadFull(f, head)
	return n == 2 && bytes.Equal(head, gzipMagic)
}

// holdLease is the lease copy and archive take on each batch they read,
// so that no run changes it meanwhile; released as each batch is done.
const holdLease = 10 * time.Minute

// archiveStore is an archive opened for reading: a SQLite ledger
// decompressed into a private temporary directory, removed at Close. It
// takes no lease, so nothing runs from it.
type archiveStore struct {
	ledger.Store
	path string
	dir  string
}

func (a *archiveStore) Location() string { return a.path }

// readOnly is what every write to an archive answers: it is read, never
// run or written (its decompressed copy is thrown away at Close).
func (a *archiveStore) readOnly() error {
	return fmt.Errorf("%s is an archive made by aopbatch ledger archive: read it with status, report or export, or copy a batch back with aopbatch ledger copy", a.path)
}

func (a *archiveStore) Acquire(context.Context, ledger.NewBatch, ledger.Owner, time.Duration) (ledger.Batch, error) {
	return ledger.Batch{}, a.readOnly()
}

func (a *archiveStore) BeginIngest(context.Context, ledger.Batch, ledger.Owner, time.Duration) (ledger.Ingest, error) {
	return nil, a.readOnly()
}

func (a *archiveStore) ClearRows(context.Context, int64, ledger.Owner) error { return a.readOnly() }

func (a *archiveStore) DropUnsent(context.Context, int64, ledger.Owner) error { return a.readOnly() }

func (a *archiveStore) RecoverInflight(context.Context, int64, ledger.Owner) (ledger.Recovered, error) {
	return ledger.Recovered{}, a.readOnly()
}

func (a *archiveStore) Move(context.Context, int64, ledger.Owner, ledger.State, ledger.State, int64, string) (int64, error) {
	return 0, a.readOnly()
}

func (a *archiveStore) NewWriter(context.Context, int64, ledger.Owner) (ledger.Writer, error) {
	return nil, a.readOnly()
}

func (a *archiveStore) Correct(context.Context, int64, ledger.Owner, ledger.Correction) error {
	return a.readOnly()
}

func (a *archiveStore) Archive(context.Context, int64, ledger.Owner, string, ledger.Counts) error {
	return a.readOnly()
}

func (a *archiveStore) ImportBatch(context.Context, ledger.Batch) (ledger.BatchImport, error) {
	return nil, a.readOnly()
}

// Size is the archive's own size, compressed.
func (a *archiveStore) Size(context.Context) (int64, error) {
	fi, err := os.Stat(a.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (a *archiveStore) Close() error {
	err := a.Store.Close()
	_ = os.RemoveAll(a.dir)
	return err
}

// openArchive decompresses the archive at path and opens it.
func openArchive(ctx context.Context, path string) (ledger.Store, error) {
	dir, err := os.MkdirTemp("", "aopbatch-archive-")
	if err != nil {
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	db := filepath.Join(dir, "ledger.db")
	if err := gunzip(path, db); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	l, err := sqlite.Open(ctx, db, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	return &archiveStore{Store: l, path: path, dir: dir}, nil
}

func gunzip(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(bufio.NewReader(in))
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return fmt.Errorf("damaged archive: %w", err)
	}
	return out.Close()
}

// gzipFile compresses from into a new file to, synced before it returns.
func gzipFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestCompression)
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mkdirSynced creates dir and its missing parents, private as report --out
// makes its directory, and syncs the directory each was added to: the
// batches are emptied from the ledger once the archive is written, so its
// path must survive a crash as its bytes do.
func mkdirSynced(dir string) error {
	var made []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		made = append(made, d)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := len(made) - 1; i >= 0; i-- {
		syncDir(filepath.Dir(made[i]))
	}
	return nil
}

// syncDir makes the entries of dir durable, as far as the system allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func runLedgerArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var before, out string
	fs := newFlagSet("ledger archive", "ledger archive --before DATE --out FILE [--ledger LEDGER]",
		"aopbatch ledger archive --ledger /var/lib/aopbatch/aopbatch.db --before 2026-11-01 --out /srv/archive/aopbatch-2026-10.ledger.gz", stderr)
	ledgerPath := ledgerFlag(fs)
	fs.StringVar(&before, "before", "", "archive the finished batches recorded before this date (YYYY-MM-DD, local time, or RFC 3339) (required)")
	fs.StringVar(&out, "out", "", "the archive to write: a new file, gzip-compressed, its directory created if missing (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	noteLedger(textLog(stderr), *ledgerPath, false)
	if before == "" || out == "" {
		return start(errors.New("ledger archive: --before and --out are both required (see aopbatch ledger archive -h)"))
	}
	cut, err := time.ParseInLocation("2006-01-02", before, time.Local)
	if err != nil {
		if cut, err = time.Parse(time.RFC3339, before); err != nil {
			return start(fmt.Errorf("ledger archive: --before %q is not a date (YYYY-MM-DD or RFC 3339)", before))
		}
	}
	if isArchive(*ledgerPath) {
		return start(fmt.Errorf("ledger archive: %s is already an archive: name the ledger its batches are in", *ledgerPath))
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return start(err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return start(fmt.Errorf("ledger archive: %s exists: pick a new file (an archive is never overwritten)", abs))
	}
	l, err := openLedgerFile(ctx, *ledgerPath)
	if err != nil {
		return start(err)
	}
	defer l.Close()
	all, err := l.Batches(ctx)
	if err != nil {
		return start(err)
	}

	// Keep runs out of each batch while it is archived: its lease.
	owner := ledger.NewOwner("archive-" + newRunID())
	bg := context.WithoutCancel(ctx)
	var (
		take    []ledger.Batch
		refused []string
		want    = map[string]ledger.Counts{}
	)
	defer func() {
		for _, b := range take {
			_ = l.Release(bg, b.ID, owner)
		}
	}()
	for _, b := range all {
		if !b.Created.Before(cut) || b.Archived != "" || !b.Ready {
			continue
		}
		if _, err := l.Acquire(ctx, ledger.NewBatch{ID: b.ID}, owner, holdLease); err != nil {
			refused = append(refused, fmt.Sprintf("%s: %v", b.ID, err))
			continue
		}
		c, err := l.Counts(ctx, b.Seq)
		if err != nil {
			_ = l.Release(bg, b.ID, owner)
			return start(err)
		}
		var open, todo []string
		unsent, unsettled := false, false
		for _, s := range ledger.States {
			if t, ok := c[s]; ok && !s.Final() {
				open = append(open, fmt.Sprintf("%d %s", t.Rows, s))
				if s == ledger.StateQueued || s == ledger.StateHeld {
					unsent = true
				} else {
					unsettled = true
				}
			}
		}
		if unsent {
			todo = append(todo, "aopbatch run again sends the queued and held rows")
		}
		if unsettled {
			todo = append(todo, "aopbatch resolve settles the ones sent without a final answer")
		}
		if len(open) > 0 {
			_ = l.Release(bg, b.ID, owner)
			refused = append(refused, fmt.Sprintf("%s: rows not final (%s): %s", b.ID, strings.Join(open, ", "), strings.Join(todo, "; ")))
			continue
		}
		take = append(take, b)
		want[b.ID] = c
	}
	for _, r := range refused {
		fmt.Fprintln(stderr, "aopbatch: not archived:", r)
	}
	if len(take) == 0 {
		fmt.Fprintf(stdout, "no finished batch recorded before %s to archive in %s\n", cut.Format("2006-01-02 15:04"), l.Location())
		if len(refused) > 0 {
			return &exitError{code: exitFinishedNo}
		}
		return nil
	}

	// Write the archive beside its final name, and rename it into place
	// only once it reads back whole.
	if err := mkdirSynced(filepath.Dir(abs)); err != nil {
		return start(fmt.Errorf("ledger archive: %w", err))
	}
	tmp, err := os.MkdirTemp(filepath.Dir(abs), ".aopbatch-archive-")
	if err != nil {
		return start(fmt.Errorf("ledger archive: %w", err))
	}
	defer os.RemoveAll(tmp)
	db := filepath.Join(tmp, "ledger.db")
	dst, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		return start(fmt.Errorf("ledger archive: %w", err))
	}
	ids := make([]string, len(take))
	for i, b := range take {
		ids[i] = b.ID
	}
	res, err := ledger.Copy(ctx, l, dst, ledger.CopyOptions{IDs: ids})
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return start(fmt.Errorf("ledger archive: %w; nothing was archived", err))
	}
	gz := filepath.Join(tmp, "archive.gz")
	if err := gzipFile(db, gz); err != nil {
		return start(fmt.Errorf("ledger archive: compress: %w; nothing was archived", err))
	}
	if err := verifyArchive(ctx, gz, want); err != nil {
		return start(fmt.Errorf("ledger archive: %w; nothing was archived", err))
	}
	// The ledger still as it was copied (a reconcile may have corrected a
	// row meanwhile on a shared ledger): else archive nothing.
	for _, b := range take {
		c, err := l.Counts(ctx, b.Seq)
		if err != nil {
			return start(err)
		}
		if !maps.Equal(c, want[b.ID]) {
			return start(fmt.Errorf("ledger archive: batch %s changed while it was copied: %w; nothing was archived, run the command again", b.ID, ledger.ErrChanged))
		}
	}
	if err := os.Link(gz, abs); err != nil { // never over a file that appeared meanwhile
		return start(fmt.Errorf("ledger archive: %w; nothing was archived", err))
	}
	syncDir(filepath.Dir(abs))

	// Only now, with the archive safe, empty the batches here.
	// The store checks again, with the batch locked, that it is as the
	// archive holds it and that no other process is at it.
	for _, b := range take {
		if err := l.Archive(ctx, b.Seq, owner, abs, want[b.ID]); err != nil {
			return &exitError{code: exitIncomplete, err: fmt.Errorf("ledger archive: %s is written, but batch %s was not emptied here and stays whole in the ledger "+
				"(its copy in %s is not to be used): %w; run the command again with a new --out for it", abs, b.ID, abs, err)}
		}
	}
	if v, ok := l.(interface{ Vacuum(context.Context) error }); ok {
		if err := v.Vacuum(ctx); err != nil {
			fmt.Fprintln(stderr, "aopbatch: ledger archive:", err)
		}
	}
	size := int64(0)
	if fi, err := os.Stat(abs); err == nil {
		size = fi.Size()
	}
	for _, b := range res.Batches {
		t := b.Counts.Total()
		fmt.Fprintf(stdout, "archived batch %s: %d rows, %s\n", b.ID, t.Rows, ledger.FormatRupees(t.Paise))
	}
	fmt.Fprintf(stdout, "archived %d batches (%d rows, %s, %d attempts) to %s (%d bytes); their referenceids stay held in %s.\n"+
		"Read them with: aopbatch report --ledger %s --batch ID\n",
		len(res.Batches), res.Rows, ledger.FormatRupees(res.Paise), res.Attempts, abs, size, l.Location(), abs)
	if len(refused) > 0 {
		return &exitError{code: exitFinishedNo}
	}
	return nil
}

// verifyArchive reads the compressed archive back and checks it holds
// every batch with the counts and sums the ledger has.
func verifyArchive(ctx context.Context, path string, want map[string]ledger.Counts) error {
	a, err := openArchive(ctx, path)
	if err != nil {
		return fmt.Errorf("reading the archive back: %w", err)
	}
	defer a.Close()
	for id, c := range want {
		b, err := a.Batch(ctx, id)
		if err != nil {
			return fmt.Errorf("reading the archive back: %w", err)
		}
		got, err := a.Counts(ctx, b.Seq)
		if err != nil {
			return fmt.Errorf("reading the archive back: %w", err)
		}
		if !maps.Equal(got, c) {
			return fmt.Errorf("the archive's batch %s reads back as %v, the ledger has %v", id, got, c)
		}
	}
	return nil
}
