package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// TestLedgerArchiveThenReport: finished batches go to a compressed archive
// that report reads to the same report.json; the ledger keeps their
// referenceids (a file reusing one is a conflict) and refuses to run them
// again; a batch with rows not final stays.
func TestLedgerArchiveThenReport(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.FailRate = 0.1 })
	dir := t.TempDir()
	db := filepath.Join(dir, "l.db")
	oldCSV, openCSV := filepath.Join(dir, "old.csv"), filepath.Join(dir, "open.csv")
	rows := goodRows(150, "OLD")
	writeCSV(t, oldCSV, rows)
	if p := aopbatch(t, nil, runArgs(oldCSV, db, sb.URL, "--batch", "old")...); p.code != 0 && p.code != 2 {
		t.Fatalf("run old: exit %d\n%s", p.code, p.stderr)
	}
	// A batch left with rows not final: pending for an hour.
	sb.SetFaults(aoptest.Faults{})
	pending := sandbox(t, func(c *aoptest.Config) { c.PendingRate = 1; c.PendingDelay = time.Hour })
	// Other payees: the same ones would be, to old's report, a retry of
	// its failed rows in a later batch, which the archive does not hold.
	open := goodRows(5, "OPEN")
	for i := range open {
		open[i].canumber = fmt.Sprintf("CB%06d", i)
	}
	writeCSV(t, openCSV, open)
	if p := aopbatch(t, nil, runArgs(openCSV, db, pending.URL, "--batch", "open", "--resolve-timeout", "1s")...); p.code != 3 {
		t.Fatalf("run open: exit %d, want 3\n%s", p.code, p.stderr)
	}
	before := reportJSON(t, db, "old")
	sizeBefore := fileSize(t, db)

	archive := filepath.Join(dir, "2026-12.ledger.gz")
	p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", archive)
	if p.code != 2 {
		t.Fatalf("archive: exit %d, want 2 (one batch refused)\n%s%s", p.code, p.stdout, p.stderr)
	}
	if !strings.Contains(p.stderr, "open: rows not final (5 pending): aopbatch resolve settles") || !strings.Contains(p.stdout, "archived batch old") {
		t.Errorf("archive output does not say what it did:\n%s%s", p.stdout, p.stderr)
	}
	if got := reportJSON(t, archive, "old"); !reflect.DeepEqual(got, before) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(before, "", " ")
		t.Errorf("report.json from the archive differs:\n%s\nwant\n%s", gj, wj)
	}
	if after := fileSize(t, db); after >= sizeBefore {
		t.Errorf("the ledger is %d bytes after archiving, %d before: nothing freed", after, sizeBefore)
	}
	// The archived batch is not run again, and its referenceids are held.
	if p := aopbatch(t, nil, runArgs(oldCSV, db, sb.URL, "--batch", "old")...); p.code != 1 || !strings.Contains(p.stderr, "archived") {
		t.Errorf("rerun of the archived batch: exit %d, want 1 naming the archive\n%s", p.code, p.stderr)
	}
	reuse := filepath.Join(dir, "reuse.csv")
	writeCSV(t, reuse, rows[:3])
	before3 := sb.Stats().Recharges
	p = aopbatch(t, nil, runArgs(reuse, db, sb.URL, "--batch", "reuse")...)
	if p.code != 2 || !strings.Contains(p.stderr, "already used by batch old") {
		t.Errorf("a file reusing archived referenceids: exit %d, want 2 with conflicts\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges - before3; n != 0 {
		t.Errorf("%d Recharges for reused referenceids", n)
	}
	// The batch with rows not final is still whole in the ledger.
	if p := aopbatch(t, nil, "status", "--ledger", db, "--batch", "open"); p.code != 0 || !strings.Contains(p.stdout, "pending") {
		t.Errorf("status of the batch left: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	// An archive is never written over.
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", archive); p.code != 1 {
		t.Errorf("archive over an existing file: exit %d, want 1\n%s", p.code, p.stderr)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// --out in a directory not made yet: archive creates it, private, as
// report --out does, and writes nothing there when there is nothing to
// archive.
func TestLedgerArchiveCreatesItsDirectory(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, csvPath := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	writeCSV(t, csvPath, goodRows(10, "DIR"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--batch", "one")...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	none := filepath.Join(dir, "none", "a.ledger.gz")
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2000-01-01", "--out", none); p.code != 0 {
		t.Fatalf("archive of nothing: exit %d\n%s", p.code, p.stderr)
	}
	if _, err := os.Lstat(filepath.Dir(none)); !os.IsNotExist(err) {
		t.Errorf("archive of nothing made %s: %v", filepath.Dir(none), err)
	}
	archive := filepath.Join(dir, "arch", "2026", "2026-12.ledger.gz")
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", archive); p.code != 0 {
		t.Fatalf("archive: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	for _, d := range []string{filepath.Join(dir, "arch"), filepath.Dir(archive)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, got)
		}
	}
	if p := aopbatch(t, nil, "report", "--ledger", archive, "--batch", "one", "--out", filepath.Join(dir, "rep")); p.code != 0 {
		t.Errorf("report from the archive: exit %d\n%s", p.code, p.stderr)
	}
}

// An archive is read, never written: ledger copy into one is refused, and
// so is a run or a reconcile from one.
func TestArchiveIsReadOnly(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, csvPath, archive := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "a.ledger.gz")
	writeCSV(t, csvPath, goodRows(20, "RO"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--batch", "one")...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", archive); p.code != 0 {
		t.Fatalf("archive: exit %d\n%s", p.code, p.stderr)
	}
	other := filepath.Join(dir, "other.db")
	writeCSV(t, csvPath, goodRows(5, "RX"))
	if p := aopbatch(t, nil, runArgs(csvPath, other, sb.URL, "--batch", "two")...); p.code != 0 {
		t.Fatalf("run two: exit %d\n%s", p.code, p.stderr)
	}
	sum := func() string {
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := sum()
	p := aopbatch(t, nil, "ledger", "copy", "--from", other, "--to", archive)
	if p.code != 1 || !strings.Contains(p.stderr, "is an archive") {
		t.Errorf("ledger copy into an archive: exit %d, want 1 naming it an archive\n%s%s", p.code, p.stdout, p.stderr)
	}
	if sum() != before {
		t.Error("the archive changed")
	}
	if p := aopbatch(t, nil, runArgs(csvPath, archive, sb.URL, "--batch", "three")...); p.code != 1 || !strings.Contains(p.stderr, "is an archive") {
		t.Errorf("run on an archive: exit %d, want 1\n%s", p.code, p.stderr)
	}
	// The batch's emptied rows in the ledger are not reported as if whole.
	if p := aopbatch(t, nil, "report", "--ledger", db, "--batch", "one", "--out", filepath.Join(dir, "rep")); p.code != 1 || !strings.Contains(p.stderr, archive) {
		t.Errorf("report of an archived batch from the ledger: exit %d, want 1 naming the archive\n%s", p.code, p.stderr)
	}
}

// A dry run holds the file's referenceids: corrected, the file's rows
// would all be conflicts. ledger drop deletes the dry run's batch (nothing
// of it was sent), and the corrected file then goes; a batch that sent
// anything is refused and kept.
func TestLedgerDropFreesADryRun(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	rows := goodRows(10, "DRY")
	rows[3].amount = "20.005" // the mistake the dry run shows
	writeCSV(t, in, rows)
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--dry-run")...); p.code != 2 {
		t.Fatalf("dry run: exit %d, want 2 (one row rejected)\n%s", p.code, p.stderr)
	}
	dry, _, _ := ledgerRows(t, db)
	p := aopbatch(t, nil, "ledger", "drop", "--ledger", db, "--batch", dry.ID)
	if p.code != 0 || !strings.Contains(p.stdout, "dropped batch "+dry.ID) {
		t.Fatalf("drop: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	rows[3].amount = "20.00"
	writeCSV(t, in, rows)
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL)...); p.code != 0 {
		t.Fatalf("corrected file: exit %d, want 0 (every row sent)\n%s", p.code, p.stderr)
	}
	sent, _, all := ledgerRows(t, db)
	if got := countStates(all)[ledger.StateSuccess]; got != len(rows) {
		t.Errorf("corrected file: %d success, want %d: %v", got, len(rows), countStates(all))
	}
	// A batch that sent anything is kept.
	p = aopbatch(t, nil, "ledger", "drop", "--ledger", db, "--batch", sent.ID)
	if p.code != 1 || !strings.Contains(p.stderr, "is kept") {
		t.Errorf("drop of a sent batch: exit %d, want 1 saying it is kept\n%s", p.code, p.stderr)
	}
	if _, _, left := ledgerRows(t, db); len(left) != len(rows) {
		t.Errorf("%d rows left after a refused drop, want %d", len(left), len(rows))
	}
}
