package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
	"github.com/aopbatch/aopbatch/reports"
)

// fetchStatement saves the sandbox's statement export to path.
func fetchStatement(t *testing.T, url, path string) string {
	t.Helper()
	resp, err := http.Get(url + "/api/AOP/Statement")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("statement: %s %v", resp.Status, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 15, must show: a run, then refunds and late successes made at the
// provider, then reconcile with its statement: exit 0, those rows now
// refunded and success in the ledger with their evidence, and status
// enquiries only for the rows that disagreed. Then a statement claiming a
// charge the provider denies: exit 2, the row unchanged.
func TestReconcileRecordsWhatTheProviderConfirms(t *testing.T) {
	sb := newRecordingSandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{27} })
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	rows := goodRows(12, "RC")
	for i := range rows {
		rows[i].operator = "311"
	}
	rows[3].operator, rows[8].operator = "27", "27" // declined: operator down
	writeCSV(t, in, rows)
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--hold-after", "5")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (two rows failed)\n%s", p.code, p.stderr)
	}
	_, before, _ := ledgerRows(t, db)
	if before[rows[3].ref].State != ledger.StateFailed || before[rows[8].ref].State != ledger.StateFailed {
		t.Fatalf("rows on operator 27: %s, %s, want failed", before[rows[3].ref].State, before[rows[8].ref].State)
	}
	sb.enquiries()

	// After the run, at the provider: two successes reversed, one decline
	// turned into a charge.
	refunded := []string{rows[1].ref, rows[6].ref}
	late := rows[3].ref
	for _, ref := range refunded {
		if !sb.RefundNow(ref) {
			t.Fatalf("refund %s", ref)
		}
	}
	if !sb.ChargeLate(late) {
		t.Fatalf("late charge %s", late)
	}
	statement := filepath.Join(dir, "statement.csv")
	fetchStatement(t, sb.URL, statement)
	out := filepath.Join(dir, "recon")
	p := aopbatch(t, nil, "reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "0", "--out", out, "--tz", "Asia/Kolkata")
	if p.code != 0 {
		t.Fatalf("reconcile: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	got := sb.enquiries()
	want := append([]string{late}, refunded...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("status enquiries for %v, want only the rows that disagreed %v", got, want)
	}
	b, after, _ := ledgerRows(t, db)
	for _, ref := range refunded {
		if after[ref].State != ledger.StateRefunded {
			t.Errorf("%s: %s, want refunded", ref, after[ref].State)
		}
	}
	if after[late].State != ledger.StateSuccess || after[late].ProviderTxnID == "" {
		t.Errorf("%s: %s txnid %q, want success with the provider's txnid", late, after[late].State, after[late].ProviderTxnID)
	}
	if after[rows[8].ref].State != ledger.StateFailed {
		t.Errorf("%s: %s, want still failed (nothing disputed it)", rows[8].ref, after[rows[8].ref].State)
	}
	evidence := evidenceLines(t, db, b.Seq)
	for _, ref := range append([]string{late}, refunded...) {
		if !strings.Contains(evidence[after[ref].Line], "reconcile: status enquiry answered") {
			t.Errorf("%s: no evidence in the attempts log: %q", ref, evidence[after[ref].Line])
		}
	}
	for _, name := range []string{"report.json", "rows.csv", "report.xlsx", "summary.md", "report.html", "reconciliation.csv"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("reconcile did not write %s: %v", name, err)
		}
	}
	if md, _ := os.ReadFile(filepath.Join(out, "summary.md")); !strings.Contains(string(md), "IST") {
		t.Error("summary.md not in --tz Asia/Kolkata")
	}

	// A statement that claims the other declined row was charged: the
	// provider denies it, so the ledger keeps it failed, and exit 2 lists
	// it with the provider's answer.
	claim := rows[8]
	forged := filepath.Join(dir, "forged.csv")
	body, _ := os.ReadFile(statement)
	body = append(body, []byte(claim.ref+",TXFAKE,"+claim.amount+",1,0,OPFAKE,2026-01-01T00:00:00Z\n")...)
	if err := os.WriteFile(forged, body, 0o600); err != nil {
		t.Fatal(err)
	}
	p = aopbatch(t, nil, "reconcile", "--statement", forged, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "0", "--out", out)
	if p.code != 2 {
		t.Fatalf("forged statement: exit %d, want 2\n%s\n%s", p.code, p.stdout, p.stderr)
	}
	if got := sb.enquiries(); !slices.Equal(got, []string{claim.ref}) {
		t.Errorf("status enquiries %v, want only %s", got, claim.ref)
	}
	if !strings.Contains(p.stdout, claim.ref) || !strings.Contains(p.stdout, "provider: not-found") {
		t.Errorf("the remaining disagreement is not listed with the provider's answer:\n%s", p.stdout)
	}
	_, final, _ := ledgerRows(t, db)
	if final[claim.ref].State != ledger.StateFailed {
		t.Errorf("%s: %s, want failed: the statement alone never changes the ledger", claim.ref, final[claim.ref].State)
	}
	// And no file offers it for sending again.
	exported := filepath.Join(dir, "retry.csv")
	if p := aopbatch(t, nil, "export", "--ledger", db, "--state", "failed", "--statement", forged, "--out", exported); p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	if raw, _ := os.ReadFile(exported); strings.Contains(string(raw), claim.canumber) {
		t.Errorf("export --statement offers %s, which the statement shows charged:\n%s", claim.ref, raw)
	}
	if md, _ := os.ReadFile(filepath.Join(out, "summary.md")); strings.Contains(string(md), "1 row failed") {
		t.Errorf("summary.md offers the disputed failed row for resending:\n%s", md)
	}
}

// evidenceLines maps each line of batch seq to its attempts' messages.
func evidenceLines(t *testing.T, path string, seq int64) map[int]string {
	t.Helper()
	l, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := map[int]string{}
	err = l.EachAttempt(context.Background(), seq, func(a *ledger.AttemptRow) error {
		m[a.Line] += a.Message + "\n"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Reconcile asks about disputed rows one at a time, at --rate, which may
// outlast the batch's lease. It renews the lease meanwhile, so a resolve
// started then is refused instead of taking the batch over and failing
// the reconcile's corrections half-way.
func TestReconcileKeepsTheLeaseWhileItAsks(t *testing.T) {
	sb := newRecordingSandbox(t, nil)
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	rows := goodRows(12, "RK")
	writeCSV(t, in, rows)
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL)...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	for _, r := range rows {
		if !sb.RefundNow(r.ref) {
			t.Fatalf("refund %s", r.ref)
		}
	}
	statement := filepath.Join(dir, "statement.csv")
	fetchStatement(t, sb.URL, statement)
	sb.enquiries()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "2", "--lease-ttl", "1s", "--out", filepath.Join(dir, "recon")}
	cmd := aopbatchCmd(ctx, nil, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// From the first enquiry, past the end of a lease never renewed.
	asked := 0
	for deadline := time.Now().Add(time.Minute); asked == 0; time.Sleep(20 * time.Millisecond) {
		if asked += len(sb.enquiries()); time.Now().After(deadline) {
			t.Fatal("reconcile asked the provider nothing in a minute")
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if asked += len(sb.enquiries()); asked >= len(rows) {
		t.Fatalf("reconcile asked about all %d rows before the test tried to take the batch", asked)
	}
	p := aopbatch(t, nil, "resolve", "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554")
	if p.code != 1 || !strings.Contains(p.stderr, ledger.ErrBatchLocked.Error()) {
		t.Errorf("resolve while reconcile asks: exit %d, want 1 (batch locked)\n%s", p.code, p.stderr)
	}
	if rc := finished(t, args, cmd.Wait(), out.String(), errb.String()); rc.code != 0 {
		t.Fatalf("reconcile: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", rc.code, rc.stdout, rc.stderr)
	}
	_, after, _ := ledgerRows(t, db)
	for _, r := range rows {
		if after[r.ref].State != ledger.StateRefunded {
			t.Errorf("%s: %s, want refunded", r.ref, after[r.ref].State)
		}
	}
}

// A corrected copy of a paid file, run as a new batch, is all conflicts:
// export --state conflict offers none of them while the first batch holds
// their referenceids, paid or failed (helper walkthrough: it offered all
// 293 under new referenceids; reviews: a failed row, corrected or not,
// was offered by both batches' exports, and by every further copy).
func TestExportConflictLeavesOutWhatWasPaid(t *testing.T) {
	sb := newRecordingSandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{27} })
	dir := t.TempDir()
	db, first, second := filepath.Join(dir, "l.db"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	rows := goodRows(6, "EC") // lines 2-7; operator 27 (down) on lines 4 and 7
	writeCSV(t, first, rows)
	if p := aopbatch(t, nil, runArgs(first, db, sb.URL, "--hold-after", "5")...); p.code != 2 {
		t.Fatalf("first run: exit %d, want 2 (two rows failed)\n%s", p.code, p.stderr)
	}
	// The same rows, two amounts corrected: a new batch, every row a conflict.
	again := append([]sampleRow(nil), rows...)
	again[0].amount = "11.00" // its referenceid's row was paid
	again[2].amount = "99.00" // its referenceid's row failed
	writeCSV(t, second, again)
	if p := aopbatch(t, nil, runArgs(second, db, sb.URL)...); p.code != 2 {
		t.Fatalf("second run: exit %d, want 2 (conflicts)\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, "export", "--ledger", db, "--batch", "latest", "--state", "conflict")
	if p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	for i, r := range again {
		if strings.Contains(p.stdout, r.canumber) {
			t.Errorf("row %d (%s, operator %s, %s) offered: the first batch holds its referenceid", i, r.ref, r.operator, r.amount)
		}
	}
	if !strings.Contains(p.stderr, "left out 6 conflict rows") || !strings.Contains(p.stderr, "line 2, success") ||
		!strings.Contains(p.stderr, "failed: if the same payment, send it once, from export --state failed --batch") {
		t.Errorf("export does not say which conflict rows it left out and why:\n%s", p.stderr)
	}
}

// Read from an archive, a conflict row's holder is often not there: the
// batch that paid its referenceid went to last month's archive, or is
// still in the live ledger. Export cannot see what became of it, so it
// offers none of them (a review: from this month's archive it offered
// both rows paid last month, referenceids blanked, to be sent again).
func TestExportConflictFromAnArchiveLeavesOutWhatWasPaid(t *testing.T) {
	sb := newRecordingSandbox(t, nil)
	dir := t.TempDir()
	db, first, second := filepath.Join(dir, "l.db"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	rows := goodRows(3, "AR")
	writeCSV(t, first, rows)
	if p := aopbatch(t, nil, runArgs(first, db, sb.URL, "--batch", "jan")...); p.code != 0 {
		t.Fatalf("first run: exit %d\n%s", p.code, p.stderr)
	}
	jan, feb := filepath.Join(dir, "jan.ledger.gz"), filepath.Join(dir, "feb.ledger.gz")
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", jan); p.code != 0 {
		t.Fatalf("archive jan: exit %d\n%s", p.code, p.stderr)
	}
	// Two of last month's referenceids again, and one new row.
	again := append([]sampleRow(nil), rows[:2]...)
	again = append(again, goodRows(1, "NEW")...)
	again[2].canumber = "CA999999"
	writeCSV(t, second, again)
	if p := aopbatch(t, nil, runArgs(second, db, sb.URL, "--batch", "feb")...); p.code != 2 {
		t.Fatalf("second run: exit %d, want 2 (conflicts)\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, "ledger", "archive", "--ledger", db, "--before", "2999-01-01", "--out", feb); p.code != 0 {
		t.Fatalf("archive feb: exit %d\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, "export", "--ledger", feb, "--batch", "feb", "--state", "conflict")
	if p.code != 0 {
		t.Fatalf("export: exit %d\n%s", p.code, p.stderr)
	}
	for _, r := range again[:2] {
		if strings.Contains(p.stdout, r.canumber) {
			t.Errorf("%s offered from the archive: batch jan paid it\n%s", r.ref, p.stdout)
		}
	}
	if !strings.Contains(p.stderr, "left out 2 conflict rows") || !strings.Contains(p.stderr, "look it up in the live ledger and the archives") {
		t.Errorf("export does not say which conflict rows it left out and why:\n%s", p.stderr)
	}
}

// A conflict row whose holder is in no batch of the ledger read is left
// out wherever it is read: a copy made with ledger copy --batch has the
// conflict without the batch that paid it (a review: exported from the
// copy, referenceid blanked, it was sent under a generated one and
// charged twice). A holder dropped unsent leaves its conflicts left out
// too: nothing records that it was never sent.
func TestExportConflictLeavesOutWhatNoBatchHere(t *testing.T) {
	sb := newRecordingSandbox(t, nil)
	dir := t.TempDir()
	db, copied, first, second := filepath.Join(dir, "l.db"), filepath.Join(dir, "copy.db"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	rows := goodRows(3, "DR")
	writeCSV(t, first, rows)
	if p := aopbatch(t, nil, runArgs(first, db, sb.URL, "--batch", "a")...); p.code != 0 {
		t.Fatalf("run a: exit %d\n%s", p.code, p.stderr)
	}
	writeCSV(t, second, rows[:2])
	if p := aopbatch(t, nil, runArgs(second, db, sb.URL, "--batch", "b")...); p.code != 2 {
		t.Fatalf("run b: exit %d, want 2 (conflicts)\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, "ledger", "copy", "--from", db, "--to", copied, "--batch", "b"); p.code != 0 || !strings.Contains(p.stdout, "copied 1 batch from") {
		t.Fatalf("copy b: exit %d, want 0, 'copied 1 batch'\n%s%s", p.code, p.stdout, p.stderr)
	}
	p := aopbatch(t, nil, "export", "--ledger", copied, "--batch", "b", "--state", "conflict")
	if p.code != 0 || strings.Contains(p.stdout, "CA000000") || !strings.Contains(p.stderr, "left out 2 conflict rows") ||
		!strings.Contains(p.stderr, "held when recorded by a batch not in this ledger now") {
		t.Errorf("export from the copy: exit %d, want both rows left out: batch a paid them\n%s%s", p.code, p.stdout, p.stderr)
	}
	// A dry run's batch, dropped: its conflicts stay left out, named.
	dry := filepath.Join(dir, "dry.db")
	if p := aopbatch(t, nil, runArgs(first, dry, sb.URL, "--batch", "a", "--dry-run")...); p.code != 0 {
		t.Fatalf("dry run a: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, runArgs(second, dry, sb.URL, "--batch", "b", "--dry-run")...); p.code != 2 {
		t.Fatalf("dry run b: exit %d, want 2 (conflicts)\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, "ledger", "drop", "--ledger", dry, "--batch", "a"); p.code != 0 {
		t.Fatalf("drop a: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	}
	if p := aopbatch(t, nil, "export", "--ledger", dry, "--batch", "b", "--state", "conflict"); p.code != 0 || !strings.Contains(p.stderr, "left out 2 conflict rows") {
		t.Errorf("export after the holder was dropped: exit %d, want both left out and named\n%s%s", p.code, p.stdout, p.stderr)
	}
}

// Rows whose money may have moved are never exported with blank
// referenceids, the file export makes being one to send again: under new
// referenceids they could be paid twice. With --keep-refs they keep their
// own; a batch whose referenceids were generated has none to keep.
// (A walkthrough: unknown rows exported, then sent with --generate-refs as
// export advised, were all paid twice.)
func TestExportRefusesRowsThatMayHaveBeenPaid(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Fault5xxRate = 1 })
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	writeCSV(t, in, goodRows(40, "MV"))
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL)...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3 (every answer a 5xx: the breaker stops the run, the rows sent unknown)\n%s", p.code, p.stderr)
	}
	unknown := 0
	_, _, rows := ledgerRows(t, db)
	for _, r := range rows {
		if r.State == ledger.StateUnknown {
			unknown++
		}
	}
	if unknown == 0 {
		t.Fatal("setup: no row unknown after the run")
	}
	for _, st := range []string{"unknown", "success", "held", "queued"} {
		out := filepath.Join(dir, st+".csv")
		p := aopbatch(t, nil, "export", "--ledger", db, "--state", st, "--out", out)
		if p.code != 1 || !strings.Contains(p.stderr, "paid twice") || !strings.Contains(p.stderr, "--keep-refs") {
			t.Errorf("export --state %s: exit %d, want 1 and why, naming --keep-refs\n%s", st, p.code, p.stderr)
		}
		if st == "unknown" && !strings.Contains(p.stderr, "aopbatch resolve") {
			t.Errorf("export --state unknown does not name the way out, aopbatch resolve:\n%s", p.stderr)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("export --state %s refused, yet %s was written (%v)", st, out, err)
		}
	}
	out := filepath.Join(dir, "kept.csv")
	if p := aopbatch(t, nil, "export", "--ledger", db, "--state", "unknown", "--keep-refs", "--out", out); p.code != 0 {
		t.Fatalf("export --state unknown --keep-refs: exit %d\n%s", p.code, p.stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(got), "MV"); n != unknown {
		t.Errorf("export --keep-refs wrote %d referenceids of the %d unknown rows:\n%s", n, unknown, got)
	}

	// Generated referenceids: no column to keep them in.
	gen, gdb := filepath.Join(dir, "gen.csv"), filepath.Join(dir, "g.db")
	if err := os.WriteFile(gen, []byte("operator,canumber,amount\n311,CA1,10.00\n12,CA2,11.00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(gen, gdb, sb.URL, "--generate-refs", "--batch", "gen-1", "--resolve-timeout", "100ms")...); p.code != 3 {
		t.Fatalf("run --generate-refs: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, "export", "--ledger", gdb, "--state", "success", "--keep-refs"); p.code != 1 || !strings.Contains(p.stderr, "generated") {
		t.Errorf("export --keep-refs of a batch with generated referenceids: exit %d, want 1 saying they were generated\n%s", p.code, p.stderr)
	}
}

// A provider whose "no such transaction" code is not 2: until aopbatch is
// told (--not-found-codes), its rows stay unknown and their message says
// how to tell it; told, resolve sends them again under their referenceids
// and they are paid once. A code with a meaning of its own is refused.
// (A walkthrough: with the sandbox's --not-found-code 77, 44 rows stayed
// unknown through every resolve, and no flag could say so.)
func TestNotFoundCodesAreConfigurable(t *testing.T) {
	sb := newRecordingSandbox(t, func(c *aoptest.Config) { c.NotFoundCode = 77; c.Fault5xxRate = 1 })
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	writeCSV(t, in, goodRows(30, "NF"))
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--resolve-timeout", "500ms")...); p.code != 3 {
		t.Fatalf("run: exit %d, want 3 (every answer a 5xx, every enquiry code 77)\n%s", p.code, p.stderr)
	}
	sb.SetFaults(aoptest.Faults{})
	resolve := []string{"resolve", "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554", "--timeout", "2s",
		"--rate", "0", "--resolve-timeout", "1s", "--progress", "never"}
	if p := aopbatch(t, nil, resolve...); p.code != 3 {
		t.Fatalf("resolve with the default not-found codes: exit %d, want 3 (the rows stay unknown)\n%s", p.code, p.stderr)
	}
	_, _, rows := ledgerRows(t, db)
	unknown := 0
	for _, r := range rows {
		if r.State != ledger.StateUnknown {
			continue
		}
		unknown++
		if !strings.Contains(r.Message, "code 77") || !strings.Contains(r.Message, "--not-found-codes") {
			t.Errorf("line %d unknown with message %q: want it to name code 77 and --not-found-codes", r.Line, r.Message)
		}
	}
	if unknown == 0 {
		t.Fatal("setup: no row unknown")
	}
	if p := aopbatch(t, nil, append(resolve, "--not-found-codes", "2,18")...); p.code != 1 || !strings.Contains(p.stderr, "code 18 has its own meaning") {
		t.Errorf("--not-found-codes 2,18: exit %d, want 1 refusing 18\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, append(resolve, "--not-found-codes", "2, 77")...); p.code != 0 {
		t.Fatalf("resolve --not-found-codes 2,77: exit %d, want 0\n%s", p.code, p.stderr)
	}
	_, _, rows = ledgerRows(t, db)
	for _, r := range rows {
		if r.State == ledger.StateUnknown || r.State == ledger.StateInflight {
			t.Errorf("line %d still %s after resolve --not-found-codes 77: %s", r.Line, r.State, r.Message)
		}
		if n := sb.NonDuplicateAnswers(r.ReferenceID); r.State == ledger.StateSuccess && n != 1 {
			t.Errorf("%s processed %d times by the provider", r.ReferenceID, n)
		}
	}
}

// readSummary reads a report.json back.
func readSummary(t *testing.T, path string) reports.Summary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s reports.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// Review: two batches reconciled with one statement that has a charge no
// row of either holds (ZZZ000001, Rs 123). Each batch counted it as
// missing_in_ledger, so the output said "2 disagreements remain" and the
// reports together showed Rs 246 charged that nobody sent. The line is
// counted once, in the first batch's report; the second's names it as
// counted there, and the batches' figures add up to the statement's.
func TestReconcileCountsAStatementLineOfNoBatchOnce(t *testing.T) {
	sb := newRecordingSandbox(t, nil)
	dir := t.TempDir()
	db, first, second := filepath.Join(dir, "l.db"), filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	writeCSV(t, first, goodRows(5, "RA"))
	writeCSV(t, second, goodRows(7, "RB"))
	for _, in := range []string{first, second} {
		if p := aopbatch(t, nil, runArgs(in, db, sb.URL)...); p.code != 0 {
			t.Fatalf("run %s: exit %d\n%s", in, p.code, p.stderr)
		}
	}
	statement := filepath.Join(dir, "statement.csv")
	body := fetchStatement(t, sb.URL, statement)
	body += "ZZZ000001,TXZZZ,123.00,1,0,OPZZZ," + time.Now().UTC().Format(time.RFC3339) + "\n"
	if err := os.WriteFile(statement, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "recon")
	p := aopbatch(t, nil, "reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "0", "--out", out)
	if p.code != 2 {
		t.Fatalf("reconcile: exit %d, want 2 (a charge nobody here sent)\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	if !strings.Contains(p.stderr, "1 disagreement remains") {
		t.Errorf("the one unmatched line is not counted once:\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	}
	if n := strings.Count(p.stdout, "ZZZ000001 missing_in_ledger"); n != 1 {
		t.Errorf("ZZZ000001 listed as a disagreement %d times, want once:\n%s", n, p.stdout)
	}

	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d report directories, want one per batch: %v", len(entries), entries)
	}
	var (
		missing, elsewhere, shownPaise       int64
		chargedNotSent, statementPaise, diff int64
		whoSent                              int
		total                                reports.Tally
	)
	for _, e := range entries {
		s := readSummary(t, filepath.Join(out, e.Name(), "report.json"))
		r := s.Reconciliation
		missing += r.MissingInLedger
		elsewhere += r.AmountsPaise[reports.CountedInOtherBatch]
		shownPaise += r.AmountsPaise[reports.MissingInLedger] + r.AmountsPaise[reports.CountedInOtherBatch]
		chargedNotSent += r.ChargedNotSent.AmountPaise
		statementPaise += r.ControlTotals.StatementSuccessPaise
		diff += r.ControlTotals.DifferencePaise
		total = r.StatementTotals.Success // the statement's own: the same in every report
		md, err := os.ReadFile(filepath.Join(out, e.Name(), "summary.md"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(md), "find out who sent them") {
			whoSent++
		}
	}
	if missing != 1 || chargedNotSent != 12300 || diff != 12300 {
		t.Errorf("across the batches: missing_in_ledger %d, charged_not_sent %d paise, difference %d paise; want 1, 12300, 12300",
			missing, chargedNotSent, diff)
	}
	if elsewhere != 12300 || shownPaise != 2*12300 {
		t.Errorf("the batch that does not count the line shows %d paise of it (of %d shown), want 12300: it says where it is counted",
			elsewhere, shownPaise)
	}
	if want := goodRowsPaise(5) + goodRowsPaise(7) + 12300; total.AmountPaise != want {
		t.Fatalf("the statement's own success total is %d paise, want %d (both batches and the line)", total.AmountPaise, want)
	}
	if statementPaise != total.AmountPaise {
		t.Errorf("the batches' statement success totals add up to %d paise, the statement's is %d", statementPaise, total.AmountPaise)
	}
	if whoSent != 1 {
		t.Errorf("%d summaries ask to find out who sent the charge, want 1", whoSent)
	}

	// One batch alone still counts every line no batch holds.
	alone := filepath.Join(dir, "alone")
	p = aopbatch(t, nil, "reconcile", "--statement", statement, "--ledger", db, "--batch", "latest", "--base-url", sb.URL,
		"--registration-id", "AOP-554", "--rate", "0", "--out", alone)
	if p.code != 2 || !strings.Contains(p.stderr, "1 disagreement remains") {
		t.Fatalf("--batch latest: exit %d, want 2 and 1 disagreement\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	s := readSummary(t, filepath.Join(alone, "report.json"))
	if r := s.Reconciliation; r.MissingInLedger != 1 || r.ChargedNotSent.AmountPaise != 12300 || r.AmountsPaise[reports.CountedInOtherBatch] != 0 {
		t.Errorf("--batch latest: missing_in_ledger %d, charged_not_sent %d paise, counted elsewhere %d paise; want 1, 12300, 0",
			r.MissingInLedger, r.ChargedNotSent.AmountPaise, r.AmountsPaise[reports.CountedInOtherBatch])
	}
}

// Review: reconcile asks the provider about every row the statement
// disputes, yet its own reports still advised "aopbatch reconcile
// --statement FILE confirms each with the provider" for the rows it had
// just asked about. After it has asked, they say what the provider
// answered and what finance does next: here the provider confirms the
// ledger (a success the statement shows failed) or has no record (a
// decline the statement shows charged), so the statement line is taken
// up with the provider.
func TestReconcileReportSaysWhatTheProviderAnswered(t *testing.T) {
	sb := newRecordingSandbox(t, func(c *aoptest.Config) { c.DownOperators = []int64{27} })
	dir := t.TempDir()
	db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
	rows := goodRows(6, "RA")
	for i := range rows {
		rows[i].operator = "311"
	}
	rows[3].operator = "27" // declined: operator down
	writeCSV(t, in, rows)
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--hold-after", "5")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (one row failed)\n%s", p.code, p.stderr)
	}
	// The statement shows a success as failed, and the decline charged;
	// the provider says otherwise of both.
	statement := filepath.Join(dir, "statement.csv")
	var forged []string
	for _, line := range strings.Split(strings.TrimSuffix(fetchStatement(t, sb.URL, statement), "\n"), "\n") {
		if f := strings.Split(line, ","); f[0] == rows[1].ref {
			f[3] = "0"
			line = strings.Join(f, ",")
		}
		forged = append(forged, line)
	}
	forged = append(forged, rows[3].ref+",TXFAKE,"+rows[3].amount+",1,0,OPFAKE,"+time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(statement, []byte(strings.Join(forged, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "recon")
	p := aopbatch(t, nil, "reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
		"--rate", "0", "--out", out)
	if p.code != 2 {
		t.Fatalf("reconcile: exit %d, want 2\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	s := readSummary(t, filepath.Join(out, "report.json"))
	if r := s.Reconciliation; r.FailedButCharged.Rows != 1 || r.SuccessNotKept.Rows != 1 {
		t.Fatalf("failed but charged %d, success not kept %d, want 1 and 1 (the provider changed neither)", r.FailedButCharged.Rows, r.SuccessNotKept.Rows)
	}
	md, err := os.ReadFile(filepath.Join(out, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	recon, err := os.ReadFile(filepath.Join(out, "reconciliation.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"summary.md": string(md), "report.json actions": strings.Join(s.Attention.Actions, "\n")} {
		if strings.Contains(text, "aopbatch reconcile --statement FILE confirms") || strings.Contains(text, "aopbatch reconcile confirms") {
			t.Errorf("%s advises to run reconcile, which has just asked:\n%s", name, text)
		}
	}
	for _, want := range []string{
		"(the provider has no record of this referenceid; the ledger is left as it is): do NOT send them again; take the statement line up with the provider",
		"(the provider confirms success, as the ledger has it; the ledger is left as it is): take the statement line up with the provider",
	} {
		if !strings.Contains(strings.Join(s.Attention.Actions, "\n"), want) {
			t.Errorf("report.json actions do not say %q:\n%s", want, strings.Join(s.Attention.Actions, "\n"))
		}
	}
	for _, ref := range []string{rows[1].ref, rows[3].ref} {
		var line string
		for _, l := range strings.Split(string(recon), "\n") {
			if strings.Contains(l, ref) {
				line = l
			}
		}
		if !strings.Contains(line, "aopbatch reconcile asked the provider") {
			t.Errorf("reconciliation.csv does not give the provider's answer for %s: %q", ref, line)
		}
	}
}

// Review: a row reconcile asked about and corrected can still disagree
// with the statement: a row pending in the ledger that the statement shows
// charged and the provider now says failed is corrected to failed, and is
// then "recorded failed that the statement shows charged"; one the
// statement shows failed and the provider charged is corrected to success,
// and is then "recorded success that the statement shows not kept". The
// reports said of both "the ledger is left as it is": finance would read
// the ledger's state as the one the run recorded, not the provider's
// confirmation of it.
func TestReconcileReportSaysWhatItRecorded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failRate  float64 // the provider's pendings that end failed
		statement string  // the statement's status for the row
		to        string  // what reconcile records
	}{
		{"failed but charged", 1, "1", "failed"},
		{"success not kept", 0, "0", "success"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := newRecordingSandbox(t, func(c *aoptest.Config) {
				c.PendingRate, c.PendingFailRate, c.PendingDelay = 1, tc.failRate, 2*time.Second
			})
			dir := t.TempDir()
			db, in := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
			rows := goodRows(1, "RW")
			writeCSV(t, in, rows)
			if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--resolve-timeout", "100ms")...); p.code != 3 {
				t.Fatalf("run: exit %d, want 3 (the row pending)\n%s", p.code, p.stderr)
			}
			statement := filepath.Join(dir, "statement.csv")
			var forged []string
			for _, line := range strings.Split(strings.TrimSuffix(fetchStatement(t, sb.URL, statement), "\n"), "\n") {
				if f := strings.Split(line, ","); f[0] == rows[0].ref {
					f[3] = tc.statement
					line = strings.Join(f, ",")
				}
				forged = append(forged, line)
			}
			if err := os.WriteFile(statement, []byte(strings.Join(forged, "\n")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond) // the provider settles the row
			out := filepath.Join(dir, "recon")
			p := aopbatch(t, nil, "reconcile", "--statement", statement, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554",
				"--rate", "0", "--out", out)
			if p.code != 2 || !strings.Contains(p.stdout, "pending -> "+tc.to) {
				t.Fatalf("reconcile: exit %d, want 2 and the row recorded %s\nstdout:\n%s\nstderr:\n%s", p.code, tc.to, p.stdout, p.stderr)
			}
			actions := strings.Join(readSummary(t, filepath.Join(out, "report.json")).Attention.Actions, "\n")
			if !strings.Contains(actions, "asked the provider about") {
				t.Fatalf("report.json actions do not say what the provider answered:\n%s", actions)
			}
			if strings.Contains(actions, "left as it is") || !strings.Contains(actions, "recorded "+tc.to+" with the enquiry as evidence") {
				t.Errorf("report.json actions do not say reconcile recorded %s:\n%s", tc.to, actions)
			}
		})
	}
}
