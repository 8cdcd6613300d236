package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
)

// TestSpreadsheetBlankLinesAreNotRows: the comma-only lines a spreadsheet
// leaves below the data are skipped like empty lines, so --expect-rows
// counts the real rows and nothing is rejected.
func TestSpreadsheetBlankLinesAreNotRows(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid\r\n")
	for _, r := range goodRows(20, "XL") {
		b.WriteString(r.operator + "," + r.canumber + "," + r.amount + "," + r.ref + "\r\n")
	}
	b.WriteString(",,,\r\n,,,\r\n")
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--expect-rows", "20")...)
	if p.code != 0 {
		t.Fatalf("exit %d, want 0\n%s", p.code, p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	if got := len(all); got != 20 {
		t.Errorf("ledger holds %d rows, want 20", got)
	}
	if n := sb.Stats().Recharges; n != 20 {
		t.Errorf("%d recharges, want 20", n)
	}
}

// TestMissingCoordinatesRefusedUpFront: a file without latitude/longitude
// columns and no default is refused before anything is sent, as one
// without RegistrationID is; the defaults from flags make it go.
func TestMissingCoordinatesRefusedUpFront(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "LL"))
	args := []string{"run", "--csv", csvPath, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554", "--progress", "never"}
	p := aopbatch(t, []string{"AOP_LATITUDE=", "AOP_LONGITUDE="}, args...)
	if p.code != 1 || !strings.Contains(p.stderr, "latitude missing") || !strings.Contains(p.stderr, "--latitude") {
		t.Errorf("no coordinates: exit %d, want 1 naming latitude and --latitude\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Requests; n != 0 {
		t.Fatalf("sandbox got %d requests, want 0", n)
	}
	p = aopbatch(t, []string{"AOP_LATITUDE=28.61", "AOP_LONGITUDE=77.20"}, args...)
	if p.code != 0 {
		t.Fatalf("with AOP_LATITUDE/AOP_LONGITUDE: exit %d, want 0\n%s", p.code, p.stderr)
	}
	wantOnce(t, goodRows(3, "LL"), "charged", sb.Charged)
}

// TestCheckOrder: what the person must fix first is named first: a
// missing input file before a missing provider, and for resolve a
// missing ledger or batch before the provider.
func TestCheckOrder(t *testing.T) {
	dir := t.TempDir()
	noProvider := []string{"AOP_BASE_URL="}
	missingCSV := filepath.Join(dir, "missing.csv")
	p := aopbatch(t, noProvider, "run", "--csv", missingCSV, "--ledger", filepath.Join(dir, "l.db"))
	if p.code != 1 || !strings.Contains(p.stderr, "no such file") || strings.Contains(p.stderr, "no provider") {
		t.Errorf("run, missing file, no provider: exit %d, want 1 saying no such file first\n%s", p.code, p.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "l.db")); err == nil {
		t.Error("run with a missing file created the ledger")
	}
	missingDB := filepath.Join(dir, "missing.db")
	p = aopbatch(t, noProvider, "resolve", "--ledger", missingDB)
	if p.code != 1 || !strings.Contains(p.stderr, "no ledger at "+missingDB) || strings.Contains(p.stderr, "no provider") {
		t.Errorf("resolve, missing ledger, no provider: exit %d, want 1 saying no ledger first\n%s", p.code, p.stderr)
	}
	// A ledger without that batch.
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(2, "CO"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 {
		t.Fatalf("run: exit %d\n%s", p.code, p.stderr)
	}
	p = aopbatch(t, noProvider, "resolve", "--ledger", db, "--batch", "no-such-batch")
	if p.code != 1 || !strings.Contains(p.stderr, "no-such-batch") || strings.Contains(p.stderr, "no provider") {
		t.Errorf("resolve, unknown batch, no provider: exit %d, want 1 naming the batch first\n%s", p.code, p.stderr)
	}
	// And with all of that right, the provider is still required.
	p = aopbatch(t, noProvider, "resolve", "--ledger", db)
	if p.code != 1 || !strings.Contains(p.stderr, "no provider") {
		t.Errorf("resolve, no provider: exit %d, want 1 saying so\n%s", p.code, p.stderr)
	}
}

// TestInterruptedAfterOne429SaysSo: a row that met one 429 and was then
// interrupted while waiting out Retry-After says that, not that the
// provider "kept answering 429".
func TestInterruptedAfterOne429SaysSo(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.ThrottleRate = 1; c.RetryAfter = 30 * time.Second })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(1, "TH"))
	cmd, errb := startRun(t, runArgs(csvPath, db, sb.URL, "--workers", "1"))
	waitRecharges(t, sb, 1)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, errb.String())
	}
	if n := sb.Stats().Recharges; n != 1 {
		t.Fatalf("%d recharge requests, want exactly 1 (the 429)", n)
	}
	_, _, all := ledgerRows(t, db)
	if len(all) != 1 || all[0].State != ledger.StateQueued {
		t.Fatalf("rows %+v, want one queued", all)
	}
	msg := all[0].Message
	if strings.Contains(msg, "kept answering") || !strings.Contains(msg, "429") || !strings.Contains(msg, "interrupted") {
		t.Errorf("message %q, want it to say one 429 and then the interrupt", msg)
	}
}

// TestGeneratedRefCollisionSettles: two ledgers (two hosts) that run
// different files under one --batch name generate the same referenceids.
// The second file's row is answered 18 and the provider's record under
// that referenceid is the first file's payment: what the provider charged
// is not this row's payment, so this row was not paid. It ends failed
// (final, exit 2) with the way out in its message, instead of staying
// duplicate and exiting 3 on every rerun; nothing is charged for it and
// the first payment is untouched.
func TestGeneratedRefCollisionSettles(t *testing.T) {
	sb := sandbox(t, nil)
	dirA, dirB := t.TempDir(), t.TempDir()
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := func(dir string) []string {
		return []string{"run", "--csv", filepath.Join(dir, "pay.csv"), "--ledger", filepath.Join(dir, "l.db"), "--base-url", sb.URL,
			"--registration-id", "AOP-554", "--latitude", "28.61", "--longitude", "77.20", "--generate-refs", "--batch", "payouts-2026-12-01",
			"--progress", "never", "--resolve-timeout", "5s"}
	}
	write(filepath.Join(dirA, "pay.csv"), "operator,canumber,amount\n311,CA-HOST-A,10\n")
	write(filepath.Join(dirB, "pay.csv"), "operator,canumber,amount\n311,CA-HOST-B,20\n")
	if p := aopbatch(t, nil, args(dirA)...); p.code != 0 {
		t.Fatalf("host A: exit %d\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, args(dirB)...)
	if p.code != 2 {
		t.Fatalf("host B: exit %d, want 2 (finished, the colliding row failed)\n%s", p.code, p.stderr)
	}
	if strings.Contains(p.stderr, "run again later") {
		t.Errorf("host B is told to run again later, which can never settle it:\n%s", p.stderr)
	}
	_, _, all := ledgerRows(t, filepath.Join(dirB, "l.db"))
	if len(all) != 1 {
		t.Fatalf("host B ledger rows %d, want 1", len(all))
	}
	row := all[0]
	if row.State != ledger.StateFailed {
		t.Errorf("colliding row %s (%q), want failed", row.State, row.Message)
	}
	for _, w := range []string{"collision", "not paid", "new referenceid", "amount 10.00 there, 20.00 here"} {
		if !strings.Contains(row.Message, w) {
			t.Errorf("message %q does not say %q", row.Message, w)
		}
	}
	// The provider holds host A's payment under the referenceid, charged
	// once; host B's was never taken.
	tx, ok := sb.Txn(row.ReferenceID)
	if !ok || tx.CANumber != "CA-HOST-A" || tx.AmountPaise != 1000 || sb.Charged(row.ReferenceID) != 1 {
		t.Errorf("provider's record %+v (charged %d), want host A's Rs 10 once", tx, sb.Charged(row.ReferenceID))
	}
	if _, paise := sb.Totals(); paise != 1000 {
		t.Errorf("provider charged %d paise in all, want 1000", paise)
	}
	before := sb.Stats().Requests
	if p := aopbatch(t, nil, args(dirB)...); p.code != 2 {
		t.Errorf("host B rerun: exit %d, want 2\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Requests - before; n != 0 {
		t.Errorf("host B rerun made %d requests, want 0: the row is settled", n)
	}
}

// TestDemoEndsWithCommandsThatRun: the demo's closing commands run as
// printed (from the directory the demo ran in), and its reconciliation
// line accounts for all of its rows.
func TestDemoEndsWithCommandsThatRun(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	demo := aopbatchCmd(ctx, nil, "demo")
	demo.Dir = work
	var out, errb bytes.Buffer
	demo.Stdout, demo.Stderr = &out, &errb
	p := finished(t, []string{"demo"}, demo.Run(), out.String(), errb.String())
	if p.code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", p.code, p.stdout, p.stderr)
	}
	m := regexp.MustCompile(`(?m)^reconciliation of (\d+) rows: (.*)$`).FindStringSubmatch(p.stdout)
	if m == nil || m[1] != "300" {
		t.Fatalf("no reconciliation line of 300 rows:\n%s", p.stdout)
	}
	sum := 0
	for _, part := range strings.Split(m[2], ", ") {
		n, err := strconv.Atoi(strings.Fields(part)[0])
		if err != nil {
			t.Fatalf("part %q of the reconciliation line", part)
		}
		sum += n
	}
	if sum != 300 {
		t.Errorf("reconciliation line adds up to %d, not 300: %s", sum, m[0])
	}
	// The closing commands, each on its own indented line after "Look
	// around".
	_, after, ok := strings.Cut(p.stdout, "Look around")
	if !ok {
		t.Fatalf("no closing commands:\n%s", p.stdout)
	}
	var cmds [][]string
	for _, line := range strings.Split(after, "\n")[1:] {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != os.Args[0] {
			t.Fatalf("closing command %q does not start with the binary that ran the demo (%s)", line, os.Args[0])
		}
		cmds = append(cmds, f[1:])
	}
	if len(cmds) < 3 {
		t.Fatalf("%d closing commands, want status, report and export at least:\n%s", len(cmds), after)
	}
	for _, args := range cmds {
		c := aopbatchCmd(ctx, nil, args...)
		c.Dir = work
		var o, e bytes.Buffer
		c.Stdout, c.Stderr = &o, &e
		r := finished(t, args, c.Run(), o.String(), e.String())
		if r.code != 0 && !(args[0] == "report" && r.code == 2) {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestUnsettledMessageSaysWhatSettlesThem: "run again later (or aopbatch
// resolve)" sent people to resolve for held rows, which only a rerun
// sends; the message names each kind of unsettled row and its way out.
func TestUnsettledMessageSaysWhatSettlesThem(t *testing.T) {
	c := ledger.Counts{
		ledger.StateSuccess: {Rows: 10}, ledger.StateHeld: {Rows: 3},
		ledger.StateQueued: {Rows: 2}, ledger.StatePending: {Rows: 1}, ledger.StateUnknown: {Rows: 1},
	}
	got := unsettledMessage(c)
	for _, want := range []string{"3 held (operator down): run the same aopbatch run command again later", "2 not sent yet: run the same aopbatch run command again",
		"2 waiting for the provider's final answer (money may have moved): run aopbatch resolve"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q does not say %q", got, want)
		}
	}
	if got := unsettledMessage(ledger.Counts{ledger.StateHeld: {Rows: 1}}); strings.Contains(got, "resolve") {
		t.Errorf("held rows only: %q sends the person to resolve", got)
	}
	// Rows a run left marked in flight may have been charged: never "not
	// sent yet".
	if got := unsettledMessage(ledger.Counts{ledger.StateInflight: {Rows: 2}}); strings.Contains(got, "not sent") ||
		!strings.Contains(got, "2 in flight when the run ended, which may have reached the provider") {
		t.Errorf("rows in flight: %q, want them said to be perhaps at the provider", got)
	}
}

// TestCollisionOnCanumberAloneWaitsForAPerson: a provider record whose
// canumber differs but whose amount is the row's may be the provider
// masking the canumber, so the row is not declared unpaid (which would
// lead a person to pay it again): it stays unsettled, saying what to ask.
func TestCollisionOnCanumberAloneWaitsForAPerson(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(1, "MASK")
	writeCSV(t, csvPath, rows)
	body := `{"operator":311,"canumber":"XXXX0000","amount":` + rows[0].amount + `,"referenceid":"` + rows[0].ref +
		`","latitude":"1","longitude":"1","RegistrationID":"AOP-554"}`
	resp, err := http.Post(sb.URL+"/api/AOP/Recharge", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--resolve-timeout", "1s")...)
	if p.code != 3 {
		t.Fatalf("exit %d, want 3 (a row for a person)\n%s", p.code, p.stderr)
	}
	_, byRef, _ := ledgerRows(t, db)
	got := byRef[rows[0].ref]
	if got.State != ledger.StateDuplicate || !strings.Contains(got.Message, "ask the provider whether it charged this row") {
		t.Errorf("row %s %q, want duplicate, asking a person", got.State, got.Message)
	}
}

// The control totals hold for a batch already in the ledger as for a new
// file: a run resuming a dry run's batch, or an interrupted one, is
// checked before it sends anything more (a review: after --dry-run,
// run --max-total 10 --expect-rows 2 --max-amount 1 sent all three rows
// of a ₹600 file, because the batch was "resumed").
func TestControlTotalsHoldWhenABatchIsResumed(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(3, "CT") // ₹10.00, ₹11.01, ₹12.02
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--dry-run")...); p.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", p.code, p.stderr)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--max-total", "30"}, "the rows to send total 33.03, above --max-total 30.00"},
		{[]string{"--expect-rows", "2"}, "the file has 3 data rows, --expect-rows says 2"},
		{[]string{"--expect-total", "33.00"}, "the rows to send total 33.03, --expect-total says 33.00"},
		{[]string{"--max-amount", "12.00"}, "1 row(s) above --max-amount 12.00, first on line(s) 4"},
	} {
		p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, tc.flags...)...)
		if p.code != 1 || !strings.Contains(p.stderr, tc.want) || !strings.Contains(p.stderr, "this run sent nothing more of it") {
			t.Errorf("resumed with %v: exit %d, want 1 saying %q and that nothing more was sent\n%s", tc.flags, p.code, tc.want, p.stderr)
		}
		if n := sb.Stats().Recharges; n != 0 {
			t.Fatalf("resumed with %v: %d Recharges, want none", tc.flags, n)
		}
	}
	// The controls the file meets: it is sent, and the lease a refused run
	// took was given back (no wait for it to expire).
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--expect-rows", "3", "--expect-total", "33.03", "--max-amount", "12.02")...)
	if p.code != 0 {
		t.Fatalf("resumed within the controls: exit %d, want 0\n%s", p.code, p.stderr)
	}
	wantOnce(t, rows, "sent", sb.Requests)
}
