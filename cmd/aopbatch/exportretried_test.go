package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// TestExportLeavesOutRowsALaterBatchPaid: rows that failed, exported and
// sent as a retry batch under new referenceids, stay failed in their own
// batch, whose advice still says to export them. Exported again from a
// file that differs at all (checked against a statement this time), and
// run, they were paid a second time (a new user's walkthrough). The
// second export leaves them out, naming the retry's rows.
func TestExportLeavesOutRowsALaterBatchPaid(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, rows := failedThenRetried(t, "RTY", paying, 0)
	dir := filepath.Dir(db)
	// Read after the retry, the first batch's report does not say to
	// export them again.
	rep := aopbatch(t, nil, "report", "--ledger", db, "--batch", "orig", "--out", filepath.Join(dir, "orig-reports"))
	if !strings.Contains(rep.stdout, "3 rows failed") || !strings.Contains(rep.stdout, "each held by a later batch of this ledger") ||
		strings.Contains(rep.stdout, "gives a file to correct") {
		t.Errorf("report of the retried batch: exit %d, want its 3 failed rows said held by a later batch, no export advised\n%s%s", rep.code, rep.stdout, rep.stderr)
	}

	st := filepath.Join(dir, "statement.csv")
	if err := os.WriteFile(st, []byte("refid,txnid,amount,status,refunded,operatorid,dateadded\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	again := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed", "--statement", st)
	if again.code != 0 || !strings.Contains(again.stderr, "left out 3 rows that a later batch of this ledger holds") ||
		!strings.Contains(again.stderr, "batch retry-1 line 2, success") {
		t.Errorf("export of rows a retry paid: exit %d, want them left out naming the retry's rows\n%s", again.code, again.stderr)
	}
	// What the person would then run, saved by a spreadsheet (CRLF): a
	// file the same but for its bytes is not the retry's content again.
	if strings.Count(again.stdout, "\n") > 1 {
		second := filepath.Join(dir, "retry2.csv")
		if err := os.WriteFile(second, []byte(strings.ReplaceAll(again.stdout, "\n", "\r\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		aopbatch(t, nil, runArgs(second, db, paying.URL, "--generate-refs", "--batch", "retry-2")...)
	}
	if n := paying.Stats().Recorded; n != int64(len(rows)) {
		t.Errorf("the provider recorded %d payments for %d payees: paid twice", n, len(rows))
	}
}

// TestExportLeavesOutRowsALaterBatchOffers: rows that failed, exported and
// sent as a retry batch that failed as well (the operator still down), are
// offered by the retry's own export --state failed. Offered by the first
// batch's export too, the two files made from the two batches' advice and
// then sent, each payee was paid twice. Only the latest batch's export
// offers them.
func TestExportLeavesOutRowsALaterBatchOffers(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, rows := failedThenRetried(t, "OFR", sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 }), 2)
	dir := filepath.Dir(db)

	// What each batch's advice says to do, once the operator is back:
	// both files made, then both sent.
	var files []string
	for i, id := range []string{"orig", "retry-1"} {
		p := aopbatch(t, nil, "export", "--ledger", db, "--batch", id, "--state", "failed")
		if p.code != 0 {
			t.Fatalf("export --batch %s: exit %d\n%s", id, p.code, p.stderr)
		}
		if id == "orig" && !strings.Contains(p.stderr, "batch retry-1 line 2, failed") {
			t.Errorf("export --batch orig: want its rows left out naming the retry's\n%s", p.stderr)
		}
		if strings.Count(p.stdout, "\n") > 1 {
			// Saved by a spreadsheet, each its own way: files the same but
			// for their bytes are not the retry's content again.
			out := filepath.Join(dir, fmt.Sprintf("again-%d.csv", i))
			eol := []string{"\r\n", " \n"}[i]
			if err := os.WriteFile(out, []byte(strings.ReplaceAll(p.stdout, "\n", eol)), 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, out)
		}
	}
	for i, f := range files {
		if p := aopbatch(t, nil, runArgs(f, db, paying.URL, "--generate-refs", "--batch", fmt.Sprintf("again-%d", i))...); p.code != 0 {
			t.Errorf("run of %s: exit %d\n%s", f, p.code, p.stderr)
		}
	}
	if n := paying.Stats().Recorded; n != int64(len(rows)) {
		t.Errorf("the provider recorded %d payments for %d payees: paid twice", n, len(rows))
	}
}

// TestExportFromAnArchiveWarnsOfRetriesNotChecked: a batch archived after
// its failed rows were retried: its export from the archive sees no later
// batch (the retry is in the live ledger) and offers them all again (a
// review). It says it could not check, and a live export says nothing.
func TestExportFromAnArchiveWarnsOfRetriesNotChecked(t *testing.T) {
	t.Parallel()
	failing := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(2, "ARW"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, failing.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	const warning = "exported from an archive"
	live := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed")
	if live.code != 0 || strings.Contains(live.stderr, warning) {
		t.Errorf("export from the live ledger: exit %d, want 0 without %q\n%s", live.code, warning, live.stderr)
	}
	arch := filepath.Join(filepath.Dir(db), "orig.ledger.gz")
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", arch); p.code != 0 {
		t.Fatalf("archive: exit %d\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, "export", "--ledger", arch, "--batch", "orig", "--state", "failed")
	if p.code != 0 || !strings.Contains(p.stderr, warning) || !strings.Contains(p.stderr, "paid twice") {
		t.Errorf("export from an archive: exit %d, want 0 warning %q\n%s", p.code, warning, p.stderr)
	}
}

// failedThenRetried runs three rows (ref prefix) that all fail as batch
// orig, exports them with new referenceids and runs that file as batch
// retry-1 against retryTo, which must exit want. It returns the ledger
// and the rows.
func failedThenRetried(t *testing.T, prefix string, retryTo *aoptest.TestServer, want int) (string, []sampleRow) {
	t.Helper()
	failing := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	db, csvPath := batchFiles(t)
	rows := goodRows(3, prefix)
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, failing.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	retry := filepath.Join(filepath.Dir(db), "retry.csv")
	if p := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed", "--out", retry); p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, runArgs(retry, db, retryTo.URL, "--generate-refs", "--batch", "retry-1")...); p.code != want {
		t.Fatalf("retry: exit %d, want %d\n%s", p.code, want, p.stderr)
	}
	return db, rows
}
