package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestTwoExportsOfTheSameFailedRowsPayThemOnce: the failed rows of a
// batch exported twice before either file was sent (two people, or one
// who lost the first file), each file sent with new referenceids: both
// paid every row, as nothing tied the files to the rows they retry. The
// export names each row's in the retryof column, the ledger lets one
// sendable row retry a row, and the second file sends nothing. Run on a
// ledger that does not hold the batch (a mistyped --ledger), a retry file
// sends nothing either.
func TestTwoExportsOfTheSameFailedRowsPayThemOnce(t *testing.T) {
	t.Parallel()
	failing := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	rows := goodRows(4, "TWO")
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, failing.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	var files []string
	for i := range 2 {
		f := filepath.Join(dir, fmt.Sprintf("retry-%d.csv", i))
		p := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed", "--out", f)
		if p.code != 0 || !strings.Contains(p.stderr, "retryof column names the row each one retries") {
			t.Fatalf("export %d: exit %d, want 0 and the retryof column explained\n%s", i, p.code, p.stderr)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(string(b), "\n"); !strings.HasSuffix(lines[0], ",retryof") || !strings.HasSuffix(lines[1], ",orig:2") {
			t.Fatalf("export %d: want a retryof column naming orig's rows:\n%s", i, b)
		}
		if i == 1 {
			// Saved by a spreadsheet: the same rows, not the same bytes.
			if err := os.WriteFile(f, []byte(strings.ReplaceAll(string(b), "\n", "\r\n")), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		files = append(files, f)
	}

	paying := sandbox(t, nil)
	if p := aopbatch(t, nil, runArgs(files[0], db, paying.URL, "--generate-refs", "--batch", "retry-a")...); p.code != 0 {
		t.Fatalf("first retry file: exit %d, want 0\n%s", p.code, p.stderr)
	}
	before := paying.Stats()
	if before.Recorded != int64(len(rows)) {
		t.Fatalf("first retry file: the provider recorded %d payments, want %d", before.Recorded, len(rows))
	}
	second := aopbatch(t, nil, runArgs(files[1], db, paying.URL, "--generate-refs", "--batch", "retry-b")...)
	after := paying.Stats()
	// Nothing of the second file reached the provider: not a request.
	if after.Recharges != before.Recharges || after.Recorded != int64(len(rows)) {
		t.Errorf("second retry file of the same rows: %d more Recharges, %d payments for %d payees; want none sent\n%s",
			after.Recharges-before.Recharges, after.Recorded, len(rows), second.stderr)
	}
	if !strings.Contains(second.stdout+second.stderr, "conflict") {
		t.Errorf("second retry file: exit %d, want its rows said to be conflicts\n%s%s", second.code, second.stdout, second.stderr)
	}
	rep := aopbatch(t, nil, "report", "--ledger", db, "--batch", "retry-b", "--out", filepath.Join(dir, "retry-b-reports"))
	if !strings.Contains(rep.stdout, "4 rows in conflict: each retries a row another batch retries already") || strings.Contains(rep.stdout, "paying under a new referenceid") {
		t.Errorf("report of the second retry: want its conflicts said to be retried already, not to pay under new referenceids\n%s", rep.stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "retry-b-reports", "rows.csv")); !strings.Contains(string(b), "already retried by batch retry-a line 2") {
		t.Errorf("rows.csv of the second retry: want its rows named with the row that retries them\n%s", b)
	}
	// The first file again, told its rows are new payments.
	if p := aopbatch(t, nil, runArgs(files[0], db, paying.URL, "--generate-refs", "--batch", "retry-d", "--pay-again")...); paying.Stats().Recharges != before.Recharges {
		t.Errorf("first retry file again with --pay-again: %d Recharges sent, want none\n%s", paying.Stats().Recharges-before.Recharges, p.stderr)
	}
	// And exported again from the refused batch, they are left out.
	again := aopbatch(t, nil, "export", "--ledger", db, "--batch", "retry-b", "--state", "conflict")
	if again.code != 0 || !strings.Contains(again.stderr, "left out 4 rows refused for the row they retry") {
		t.Errorf("export of the refused rows: exit %d, want all 4 left out\n%s", again.code, again.stderr)
	}

	// The same file on a ledger that never saw batch orig.
	other := filepath.Join(dir, "other.db")
	wrong := aopbatch(t, nil, runArgs(files[1], other, paying.URL, "--generate-refs", "--batch", "retry-c")...)
	if got := paying.Stats().Recharges; got != before.Recharges {
		t.Errorf("retry file on another ledger: %d Recharges sent, want none\n%s", got-before.Recharges, wrong.stderr)
	}
	if !strings.Contains(wrong.stderr, "4 of 4 rows pay again rows of batch orig (their retryof column), which this ledger does not hold") {
		t.Errorf("retry file on another ledger: exit %d, want the rows refused naming batch orig\n%s%s", wrong.code, wrong.stdout, wrong.stderr)
	}
}

// TestARetryRejectedStillRetriesTheFirstRow: a row of a retry file that
// was rejected (its amount mistyped) was never sent and held nothing.
// Its batch's export --state rejected names the row it retried, not
// itself: named itself, the corrected row would be paid and the first
// row still free for a second export of the first batch to pay again.
func TestARetryRejectedStillRetriesTheFirstRow(t *testing.T) {
	t.Parallel()
	failing := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	writeCSV(t, csvPath, goodRows(6, "RJT"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, failing.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	first := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed")
	if first.code != 0 {
		t.Fatalf("export: exit %d\n%s", first.code, first.stderr)
	}
	// The person mistypes the first row's amount.
	lines := strings.Split(first.stdout, "\n")
	cells := strings.Split(lines[1], ",")
	cells[2] = "10,00"
	lines[1] = strings.Join(cells[:2], ",") + `,"10,00",` + strings.Join(cells[3:], ",")
	retry := filepath.Join(dir, "retry.csv")
	if err := os.WriteFile(retry, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	paying := sandbox(t, nil)
	p := aopbatch(t, nil, runArgs(retry, db, paying.URL, "--generate-refs", "--batch", "retry-1")...)
	if n := paying.Stats().Recorded; n != 5 {
		t.Fatalf("retry with a mistyped amount: %d paid, want 5 (the sixth rejected)\n%s", n, p.stderr)
	}
	fix := aopbatch(t, nil, "export", "--ledger", db, "--batch", "retry-1", "--state", "rejected")
	if fix.code != 0 || !strings.Contains(fix.stdout, ",orig:2\n") {
		t.Fatalf("export of the rejected retry row: exit %d, want it still retrying orig:2\n%s%s", fix.code, fix.stdout, fix.stderr)
	}
	fixed := filepath.Join(dir, "fixed.csv")
	if err := os.WriteFile(fixed, []byte(strings.Replace(fix.stdout, `"10,00"`, "10.00", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(fixed, db, paying.URL, "--generate-refs", "--batch", "retry-2")...); p.code != 0 {
		t.Fatalf("corrected row: exit %d\n%s", p.code, p.stderr)
	}
	// The first export, sent again as it was (saved anew by a spreadsheet),
	// pays nothing more.
	again := filepath.Join(dir, "again.csv")
	if err := os.WriteFile(again, []byte(strings.ReplaceAll(first.stdout, "\n", "\r\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	before := paying.Stats().Recharges
	aopbatch(t, nil, runArgs(again, db, paying.URL, "--generate-refs", "--batch", "again")...)
	if st := paying.Stats(); st.Recharges != before || st.Recorded != 6 {
		t.Errorf("the first export sent again: %d more Recharges, %d paid for 6 payees; want none sent", st.Recharges-before, st.Recorded)
	}
}

// TestRejectsSubmittedAgainAreNotAdvisedAgain: a batch's rejected rows,
// corrected in its rejects.csv and submitted, were still advised for
// correcting and submitting by the batch's report, its rejects.csv
// listed them fixable, and its export offered them (a new user's
// walkthrough). The row a later batch names as the one it retries is
// that payment for certain, whatever its amount was.
func TestRejectsSubmittedAgainAreNotAdvisedAgain(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	rows := goodRows(6, "RSA")
	rows[2].amount = "10,00" // unreadable: the row is rejected with no amount
	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%s,%s,%q,%s\n", r.operator, r.canumber, r.amount, r.ref)
	}
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(csvPath, db, paying.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (one row rejected)\n%s", p.code, p.stderr)
	}
	out := filepath.Join(dir, "reports")
	if p := aopbatch(t, nil, "report", "--ledger", db, "--batch", "orig", "--out", out); !strings.Contains(p.stdout, "correct rejects.csv and submit it") {
		t.Fatalf("report: want the rejected row advised for correcting\n%s", p.stdout)
	}
	rejects, err := os.ReadFile(filepath.Join(out, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := filepath.Join(dir, "fixed.csv")
	if err := os.WriteFile(fixed, []byte(strings.Replace(string(rejects), `"10,00"`, "10.00", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(fixed, db, paying.URL, "--batch", "fixed")...); p.code != 0 {
		t.Fatalf("corrected rejects.csv: exit %d, want 0\n%s", p.code, p.stderr)
	}
	rep := aopbatch(t, nil, "report", "--ledger", db, "--batch", "orig", "--out", filepath.Join(dir, "reports-after"))
	if !strings.Contains(rep.stdout, "1 row rejected (₹0.00, beside 1 whose amount could not be read), not sent here, each held by a later batch") ||
		strings.Contains(rep.stdout, "correct rejects.csv and submit it") {
		t.Errorf("report after the corrected row was paid: want nothing more to submit\n%s", rep.stdout)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "reports-after", "rejects.csv"))
	if !strings.Contains(string(after), "held by a later batch: batch fixed line 2, success\",no") {
		t.Errorf("rejects.csv after: want the row marked fixable no, naming batch fixed line 2\n%s", after)
	}
	exp := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "rejected")
	if exp.code != 0 || !strings.Contains(exp.stderr, "left out 1 rows that a later batch of this ledger holds") {
		t.Errorf("export --state rejected after: exit %d, want the row left out\n%s", exp.code, exp.stderr)
	}
	if n := paying.Stats().Recorded; n != int64(len(rows)) {
		t.Errorf("the provider recorded %d payments for %d payees", n, len(rows))
	}
}

// TestCopyTakesABatchWithItsRetries: a batch copied to another ledger
// without the batch that retried its failed rows arrived there failed and
// retried by nothing, and a retry file of them run there paid them again
// (a review). The copy is refused until the retries go with it.
func TestCopyTakesABatchWithItsRetries(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, rows := failedThenRetried(t, "CPY", paying, 0)
	dir := filepath.Dir(db)
	// The first export's file, run on each copy below: every row of it
	// retried already.
	f := filepath.Join(dir, "retry.csv")
	for i, batches := range [][]string{{"orig"}, {"orig", "retry-1"}} {
		other := filepath.Join(dir, fmt.Sprintf("other-%d.db", i))
		args := []string{"ledger", "copy", "--from", db, "--to", other}
		for _, b := range batches {
			args = append(args, "--batch", b)
		}
		p := aopbatch(t, nil, args...)
		if len(batches) == 1 && (p.code != 1 || !strings.Contains(p.stderr, "retry-1 (retries orig line 2)") || !strings.Contains(p.stderr, "nothing was copied")) {
			t.Errorf("copy of orig alone: exit %d, want 1 naming retry-1\n%s%s", p.code, p.stdout, p.stderr)
		}
		if len(batches) == 2 && p.code != 0 {
			t.Fatalf("copy of orig with retry-1: exit %d\n%s", p.code, p.stderr)
		}
		aopbatch(t, nil, runArgs(f, other, paying.URL, "--generate-refs", "--batch", "retry-2", "--pay-again")...)
		if n := paying.Stats().Recorded; n != int64(len(rows)) {
			t.Errorf("copy of %v: the provider recorded %d payments for %d payees: paid twice", batches, n, len(rows))
		}
	}
}

// TestRejectsFedBackKeepOneTrailer: a rejects.csv fed back in as it was
// (the row still bad) gave a rejects.csv whose header repeated the
// trailer, once more each round (a new user's walkthrough); its row
// still names the row it retries.
func TestRejectsFedBackKeepOneTrailer(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	if err := os.WriteFile(csvPath, []byte("operator,canumber,amount,referenceid\n12,CA1,10.005,FB-1\n12,CA2,10.00,FB-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aopbatch(t, nil, append(runArgs(csvPath, db, paying.URL, "--batch", "orig"), "--max-reject-rate", "1")...)
	prev := csvPath
	for i, batch := range []string{"orig", "again-1", "again-2"} {
		out := filepath.Join(dir, "rep-"+batch)
		aopbatch(t, nil, "report", "--ledger", db, "--batch", batch, "--out", out)
		b, err := os.ReadFile(filepath.Join(out, "rejects.csv"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if want := "operator,canumber,amount,referenceid,retryof,line,error_code,reason,fixable"; lines[0] != want {
			t.Errorf("rejects.csv of %s: header %q, want %q", batch, lines[0], want)
		}
		if len(lines) != 2 || !strings.HasPrefix(lines[1], "12,CA1,10.005,FB-1,orig:2,") {
			t.Errorf("rejects.csv of %s (from %s): want the row still retrying orig:2\n%s", batch, filepath.Base(prev), b)
		}
		if i < 2 {
			prev = filepath.Join(dir, fmt.Sprintf("fed-%d.csv", i))
			if err := os.WriteFile(prev, b, 0o644); err != nil {
				t.Fatal(err)
			}
			aopbatch(t, nil, append(runArgs(prev, db, paying.URL, "--batch", []string{"again-1", "again-2"}[i]), "--max-reject-rate", "1")...)
		}
	}
}

// TestDropKeepsABatchItsRetriesName: a batch of which nothing was sent
// (every row rejected), whose rows a corrected rejects.csv then paid, was
// dropped: the retries named a row the ledger no longer held, and their
// own failed rows were offered by nothing (a review). It is kept.
func TestDropKeepsABatchItsRetriesName(t *testing.T) {
	t.Parallel()
	paying := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	if err := os.WriteFile(csvPath, []byte("operator,canumber,amount,referenceid\n12,CA1,10.005,DR-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aopbatch(t, nil, append(runArgs(csvPath, db, paying.URL, "--batch", "orig"), "--max-reject-rate", "1")...)
	out := filepath.Join(dir, "rep")
	aopbatch(t, nil, "report", "--ledger", db, "--batch", "orig", "--out", out)
	b, err := os.ReadFile(filepath.Join(out, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := filepath.Join(dir, "fixed.csv")
	if err := os.WriteFile(fixed, []byte(strings.Replace(string(b), "10.005", "10.00", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(fixed, db, paying.URL, "--batch", "fixed")...); p.code != 0 {
		t.Fatalf("corrected row: exit %d\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, "ledger", "drop", "--ledger", db, "--batch", "orig")
	if p.code != 1 || !strings.Contains(p.stderr, "batches retry its rows (fixed (retries orig line 2))") {
		t.Errorf("drop of a batch a retry names: exit %d, want 1 naming batch fixed\n%s%s", p.code, p.stdout, p.stderr)
	}
}

// TestCopyFromAnArchiveKeepsItArchived: a batch archived before its
// failed rows were retried, copied out of the archive into a new ledger,
// arrived there a batch of its own: the retry is in the live ledger, and
// the new ledger's export offered the rows again, to be paid twice (a
// review). It arrives archived, as it is in the live ledger, and its
// export there is refused.
func TestCopyFromAnArchiveKeepsItArchived(t *testing.T) {
	t.Parallel()
	failing := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	paying := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	dir := filepath.Dir(db)
	rows := goodRows(2, "CFA")
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, failing.URL, "--batch", "orig")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	time.Sleep(1100 * time.Millisecond)
	cut := time.Now().UTC().Format(time.RFC3339)
	time.Sleep(1100 * time.Millisecond)
	retry := filepath.Join(dir, "retry.csv")
	if p := aopbatch(t, nil, "export", "--ledger", db, "--batch", "orig", "--state", "failed", "--out", retry); p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, runArgs(retry, db, paying.URL, "--generate-refs", "--batch", "retry-1")...); p.code != 0 {
		t.Fatalf("retry: exit %d\n%s", p.code, p.stderr)
	}
	arch := filepath.Join(dir, "old.ledger.gz")
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", cut, "--out", arch); p.code != 0 || !strings.Contains(p.stdout, "orig") {
		t.Fatalf("archive orig alone: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	restored := filepath.Join(dir, "restored.db")
	if p := aopbatch(t, nil, "ledger", "copy", "--from", arch, "--to", restored); p.code != 0 {
		t.Fatalf("copy from the archive: exit %d\n%s", p.code, p.stderr)
	}
	exp := aopbatch(t, nil, "export", "--ledger", restored, "--batch", "orig", "--state", "failed")
	if exp.code != 1 || !strings.Contains(exp.stderr, "archived") {
		t.Errorf("export from the restored copy: exit %d, want it refused, the batch archived\n%s%s", exp.code, exp.stdout, exp.stderr)
	}
	if strings.Count(exp.stdout, "\n") > 1 {
		again := filepath.Join(dir, "again.csv")
		if err := os.WriteFile(again, []byte(exp.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		aopbatch(t, nil, runArgs(again, restored, paying.URL, "--generate-refs", "--batch", "again")...)
	}
	if n := paying.Stats().Recorded; n != int64(len(rows)) {
		t.Errorf("the provider recorded %d payments for %d payees: paid twice", n, len(rows))
	}
}
