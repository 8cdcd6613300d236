package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/postgres/pgtest"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// The test binary doubles as the aopbatch binary: process-level behaviour
// (exit codes, signals, kill -9, resume) is tested on a real subprocess
// without a separate build step.
func TestMain(m *testing.M) {
	// The binary is also the --token-command of the auth tests. It is
	// checked first: the command inherits AOPBATCH_BE_MAIN from the
	// aopbatch process that runs it.
	if url := os.Getenv(tokenURLEnv); url != "" && len(os.Args) == 2 && os.Args[1] == mintTokenArg {
		os.Exit(mintToken(url, os.Getenv(tokenCountEnv)))
	}
	if len(os.Args) == 2 && os.Args[1] == failTokenArg {
		os.Exit(failToken())
	}
	if os.Getenv("AOPBATCH_BE_MAIN") == "1" {
		limitFileSize()
		main()
		return
	}
	os.Exit(pgtest.Main(m))
}

// proc is a finished aopbatch subprocess.
type proc struct {
	code           int
	stdout, stderr string
}

func aopbatchCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "AOPBATCH_BE_MAIN=1"), env...)
	// A subprocess that outlives its test's deadline prints where it is
	// stuck (Go's SIGQUIT goroutine dump) rather than dying silently.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// aopbatch runs the binary to completion and returns its exit code and output.
func aopbatch(t *testing.T, env []string, args ...string) proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := aopbatchCmd(ctx, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return finished(t, args, cmd.Run(), out.String(), errb.String())
}

// finished turns the end of an aopbatch subprocess into a proc, failing the
// test when it could not run or crashed: a panic or a goroutine dump is
// never an acceptable answer to any input.
func finished(t *testing.T, args []string, err error, stdout, stderr string) proc {
	t.Helper()
	p := proc{stdout: stdout, stderr: stderr}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		p.code = ee.ExitCode()
	default:
		t.Fatalf("aopbatch %v: %v", args, err)
	}
	if strings.Contains(p.stderr, "goroutine ") || strings.Contains(p.stderr, "panic:") {
		t.Fatalf("aopbatch %v crashed:\n%s", args, p.stderr)
	}
	return p
}

// sampleRow is one input row for tests.
type sampleRow struct {
	operator, canumber, amount, ref string
}

func goodRows(n int, prefix string) []sampleRow {
	rows := make([]sampleRow, n)
	for i := range rows {
		rows[i] = sampleRow{
			operator: []string{"311", "12", "27"}[i%3],
			canumber: fmt.Sprintf("CA%06d", i),
			amount:   fmt.Sprintf("%d.%02d", 10+i%500, i%100),
			ref:      fmt.Sprintf("%s%07d", prefix, i),
		}
	}
	return rows
}

// goodRowsPaise is the amount of goodRows(n, ...), in paise.
func goodRowsPaise(n int) int64 {
	var p int64
	for i := range n {
		p += int64(10+i%500)*100 + int64(i%100)
	}
	return p
}

func writeCSV(t *testing.T, path string, rows []sampleRow) {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"operator", "canumber", "amount", "referenceid"})
	for _, r := range rows {
		_ = w.Write([]string{r.operator, r.canumber, r.amount, r.ref})
	}
	w.Flush()
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// paise converts test amounts ("12.05") without floats.
func paise(t *testing.T, s string) int64 {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	f := int64(0)
	if frac != "" {
		for len(frac) < 2 {
			frac += "0"
		}
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil {
			t.Fatalf("amount %q: %v", s, err)
		}
	}
	return w*100 + f
}

func sandbox(t *testing.T, mutate func(*aoptest.Config)) *aoptest.TestServer {
	t.Helper()
	cfg := aoptest.DefaultConfig()
	cfg.Seed = 1
	if mutate != nil {
		mutate(&cfg)
	}
	s := aoptest.NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// batchFiles returns a ledger path and an input CSV path in a fresh
// temporary directory.
func batchFiles(t *testing.T) (db, csvPath string) {
	t.Helper()
	dir := t.TempDir()
	return filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv")
}

// wantOnce checks that count(ref) is exactly 1 for every row; what names
// the count in the failure ("charged", "sent", ...).
func wantOnce(t *testing.T, rows []sampleRow, what string, count func(string) int) {
	t.Helper()
	for _, r := range rows {
		if n := count(r.ref); n != 1 {
			t.Errorf("ref %s %s %d times, want 1", r.ref, what, n)
		}
	}
}

// checkRejected checks that exactly the lines in want are rejected, each
// with a reason containing want[line], and that every other row succeeded.
func checkRejected(t *testing.T, all []ledger.Row, want map[int]string) {
	t.Helper()
	for _, r := range all {
		reason, isBad := want[r.Line]
		switch {
		case isBad && r.State != ledger.StateRejected:
			t.Errorf("line %d: state %s, want rejected", r.Line, r.State)
		case isBad && !strings.Contains(r.Message, reason):
			t.Errorf("line %d: reason %q does not say %q", r.Line, r.Message, reason)
		case !isBad && r.State != ledger.StateSuccess:
			t.Errorf("line %d: state %s (%s), want success", r.Line, r.State, r.Message)
		}
	}
}

func runArgs(csvPath, ledgerPath, url string, extra ...string) []string {
	return append([]string{"run", "--csv", csvPath, "--ledger", ledgerPath, "--base-url", url,
		"--registration-id", "AOP-554", "--latitude", "28.61", "--longitude", "77.20", "--rate", "0", "--workers", "16", "--timeout", "2s",
		"--resolve-timeout", "10s", "--progress", "never"}, extra...)
}

// ledgerRows reads every row of the ledger's only batch.
func ledgerRows(t *testing.T, path string) (ledger.Batch, map[string]ledger.Row, []ledger.Row) {
	t.Helper()
	l, err := openLedgerFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := l.Batch(context.Background(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]ledger.Row{}
	var all []ledger.Row
	err = l.EachRow(context.Background(), b.Seq, func(r *ledger.Row) error {
		all = append(all, *r)
		if r.State != ledger.StateRejected && r.State != ledger.StateConflict {
			byRef[r.ReferenceID] = *r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, byRef, all
}

func countStates(rows []ledger.Row) map[ledger.State]int {
	c := map[ledger.State]int{}
	for _, r := range rows {
		c[r.State]++
	}
	return c
}

func TestRunAllSuccessThenRerunSendsNothing(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	csvPath, db := filepath.Join(dir, "in.csv"), filepath.Join(dir, "l.db")
	rows := goodRows(3000, "R")
	writeCSV(t, csvPath, rows)

	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("exit code %d, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	_, byRef, all := ledgerRows(t, db)
	if got, want := len(all), len(rows); got != want {
		t.Fatalf("ledger rows = %d, want %d", got, want)
	}
	var want int64
	for _, r := range rows {
		lr, ok := byRef[r.ref]
		if !ok || lr.State != ledger.StateSuccess {
			t.Fatalf("ref %s: ledger %+v, want success", r.ref, lr.State)
		}
		if got := sb.Charged(r.ref); got != 1 {
			t.Fatalf("ref %s charged %d times, want 1", r.ref, got)
		}
		want += paise(t, r.amount)
	}
	if _, got := sb.Totals(); got != want {
		t.Errorf("sandbox charged %d paise, want %d", got, want)
	}

	before := sb.Stats().Recharges
	p = aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("rerun exit code %d, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	if got := sb.Stats().Recharges - before; got != 0 {
		t.Errorf("rerun sent %d recharge requests, want 0", got)
	}
	if !strings.Contains(p.stderr, "resuming batch") {
		t.Errorf("rerun did not say it resumed:\n%s", p.stderr)
	}
}

func TestReusedReferenceInAnotherFileIsConflict(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db := filepath.Join(dir, "l.db")
	first, second := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	writeCSV(t, first, goodRows(5, "A"))
	if p := aopbatch(t, nil, runArgs(first, db, sb.URL)...); p.code != 0 {
		t.Fatalf("first file: exit %d\n%s", p.code, p.stderr)
	}
	reused := goodRows(5, "A")[2]
	reused.amount = "999.00" // drifted: same referenceid, another payment
	rows := append(goodRows(3, "B"), reused)
	writeCSV(t, second, rows)
	p := aopbatch(t, nil, runArgs(second, db, sb.URL)...)
	if p.code != 2 {
		t.Fatalf("second file: exit %d, want 2\n%s", p.code, p.stderr)
	}
	if got := sb.Requests(reused.ref); got != 1 {
		t.Errorf("reused ref sent %d times in all, want 1 (only by the first file)", got)
	}
	_, _, all := ledgerRows(t, db)
	var conflict *ledger.Row
	for i := range all {
		if all[i].State == ledger.StateConflict {
			conflict = &all[i]
		}
	}
	if conflict == nil {
		t.Fatalf("no conflict row in the second batch: %v", countStates(all))
	}
	if conflict.Line != 5 || !strings.Contains(conflict.Message, "different details") {
		t.Errorf("conflict row line %d message %q: want line 5 and the drift named", conflict.Line, conflict.Message)
	}
	if got := countStates(all)[ledger.StateSuccess]; got != 3 {
		t.Errorf("success rows in second batch = %d, want 3", got)
	}
}

func TestBadRowsAreRejectedGoodRowsGo(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(6, "G")
	bad := []sampleRow{
		{"311", "CA1", "10.005", "X1"},
		{"311", "CA2", "-5", "X2"},
		{"311", "CA3", "abc", "X3"},
		{"311", "", "10", "X4"},
		{"311", "CA5", "10", rows[0].ref}, // repeats line 2's referenceid
	}
	writeCSV(t, csvPath, append(rows, bad...))
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--max-reject-rate", "1")...)
	if p.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", p.code, p.stderr)
	}
	_, _, all := ledgerRows(t, db)
	wantReject := map[int]string{ // line -> what the reason must name
		8:  `"amount", value "10.005"`,
		9:  `"amount", value "-5"`,
		10: `"amount", value "abc"`,
		11: `"canumber"`,
		12: `"referenceid", value "` + rows[0].ref + `": repeats line 2`,
	}
	checkRejected(t, all, wantReject)
	for _, b := range bad[:4] {
		if n := sb.Requests(b.ref); n != 0 {
			t.Errorf("rejected ref %s was sent %d times", b.ref, n)
		}
	}
	if got := sb.Requests(rows[0].ref); got != 1 {
		t.Errorf("ref on line 2 sent %d times, want 1", got)
	}
}

func TestMissingAmountColumnSendsNothing(t *testing.T) {
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	if err := os.WriteFile(csvPath, []byte("operator,canumber,referenceid\n311,CA1,R1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 1 {
		t.Fatalf("exit %d, want 1\n%s", p.code, p.stderr)
	}
	if !strings.Contains(p.stderr, `"amount"`) || !strings.Contains(p.stderr, "nothing was sent") {
		t.Errorf("stderr does not name the missing column and say nothing was sent:\n%s", p.stderr)
	}
	if n := sb.Stats().Requests; n != 0 {
		t.Errorf("sandbox got %d requests, want 0", n)
	}
	l, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if bs, _ := l.Batches(context.Background()); len(bs) != 0 {
		t.Errorf("ledger holds %d batches after a bad file, want 0", len(bs))
	}
}

// TestKill9MidRunResumes kills a real run with SIGKILL while requests are in
// flight, then reruns it: no row lost, none paid twice, final rows never
// re-sent.
func TestKill9MidRunResumes(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) { c.Latency = 20 * time.Millisecond })
	db, csvPath := batchFiles(t)
	rows := goodRows(600, "K")
	writeCSV(t, csvPath, rows)

	cmd := aopbatchCmd(context.Background(), nil, runArgs(csvPath, db, sb.URL, "--rate", "300")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for sb.Stats().Recharges < 150 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	_, before, _ := ledgerRows(t, db)
	finalBefore := map[string]int{} // ref -> requests seen when it was already final
	for ref, r := range before {
		if r.State.Final() {
			finalBefore[ref] = sb.Requests(ref)
		}
	}
	if len(finalBefore) == 0 || len(finalBefore) == len(rows) {
		t.Fatalf("kill landed at a useless moment: %d of %d rows final", len(finalBefore), len(rows))
	}

	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("rerun exit %d, want 0\n%s", p.code, p.stderr)
	}
	_, after, all := ledgerRows(t, db)
	if len(all) != len(rows) {
		t.Fatalf("ledger has %d rows, want %d", len(all), len(rows))
	}
	for _, r := range rows {
		if got := after[r.ref].State; got != ledger.StateSuccess {
			t.Errorf("ref %s: %s, want success", r.ref, got)
		}
		if n := sb.NonDuplicateAnswers(r.ref); n != 1 {
			t.Errorf("ref %s: %d requests answered other than 18, want exactly 1", r.ref, n)
		}
		if n, ok := finalBefore[r.ref]; ok && sb.Requests(r.ref) != n {
			t.Errorf("ref %s was final before the rerun and was sent again", r.ref)
		}
		if n := sb.Resent(r.ref); n > 0 {
			t.Errorf("ref %s was sent again after the provider had recorded it (%d times): rows in flight at the kill must be enquired first", r.ref, n)
		}
	}
}

// TestRejectsFileFeedsStraightBack: rejects.csv, corrected by a person, is
// itself a valid input file (its trailing line/error_code/reason/fixable
// columns are ignored) and its rows go through.
func TestRejectsFileFeedsStraightBack(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, csvPath, rep := filepath.Join(dir, "l.db"), filepath.Join(dir, "in.csv"), filepath.Join(dir, "rep")
	rows := goodRows(4, "F")
	rows = append(rows, sampleRow{"311", "CA9", "10.005", "FIXME1"}, sampleRow{"27", "CA8", "abc", "FIXME2"})
	writeCSV(t, csvPath, rows)
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--max-reject-rate", "1", "--report", rep)...); p.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", p.code, p.stderr)
	}
	rejects, err := os.ReadFile(filepath.Join(rep, "rejects.csv"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.NewReplacer("10.005", "10.00", "abc", "12.50").Replace(string(rejects))
	fixedPath := filepath.Join(dir, "fixed.csv")
	if err := os.WriteFile(fixedPath, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	p := aopbatch(t, nil, runArgs(fixedPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("corrected rejects.csv: exit %d, want 0\n%s\nfile:\n%s", p.code, p.stderr, fixed)
	}
	for _, ref := range []string{"FIXME1", "FIXME2"} {
		if n := sb.Charged(ref); n != 1 {
			t.Errorf("ref %s charged %d times, want 1", ref, n)
		}
	}
}

// TestGeneratedRefsNeedANamedBatch: generated referenceids come from the
// batch id. One derived from the file's bytes would change with any edit,
// so a corrected copy would pay its rows again: --generate-refs needs a
// named batch, and under it a corrected or re-saved copy is refused as
// different content. Only the rows still to pay go, under a new id; and
// ids sharing a long prefix never share referenceids.
func TestGeneratedRefsNeedANamedBatch(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db, path := filepath.Join(dir, "l.db"), filepath.Join(dir, "pay.csv")
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := func(csvPath string, extra ...string) []string {
		return append([]string{"run", "--csv", csvPath, "--ledger", db, "--base-url", sb.URL, "--registration-id", "AOP-554", "--latitude", "28.61", "--longitude", "77.20",
			"--generate-refs", "--max-reject-rate", "1", "--progress", "never"}, extra...)
	}
	write(path, "operator,canumber,amount\n311,GA1,10\n311,GA2,abc\n311,GA3,30\n")
	if p := aopbatch(t, nil, args(path)...); p.code != 1 || !strings.Contains(p.stderr, "--generate-refs needs --batch") {
		t.Errorf("without --batch: exit %d, want 1 saying why\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, args(path, "--batch", "pay-1")...); p.code != 2 {
		t.Fatalf("first run: exit %d, want 2 (a row rejected)\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 2 {
		t.Fatalf("first run sent %d, want 2", n)
	}
	for _, body := range []string{
		"operator,canumber,amount\n311,GA1,10\n311,GA2,20\n311,GA3,30\n",          // the bad row fixed
		"operator,canumber,amount\r\n311,GA1,10\r\n311,GA2,abc\r\n311,GA3,30\r\n", // re-saved with CRLF
		"operator,canumber,amount\n311,GA1,10\n311,GA3,30\n",                      // the bad row deleted
	} {
		write(path, body)
		p := aopbatch(t, nil, args(path, "--batch", "pay-1")...)
		if p.code != 1 || !strings.Contains(p.stderr, "would be paid again") {
			t.Errorf("edited copy: exit %d, want 1 explaining the refusal\n%s", p.code, p.stderr)
		}
	}
	if n := sb.Stats().Recharges; n != 2 {
		t.Fatalf("%d recharges after the refused copies, want still 2", n)
	}
	// The row still to pay, on its own, under its own id: sent once.
	fix := filepath.Join(dir, "fix.csv")
	write(fix, "operator,canumber,amount\n311,GA2,20\n")
	if p := aopbatch(t, nil, args(fix, "--batch", "pay-1-fix")...); p.code != 0 {
		t.Fatalf("fix file: exit %d\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 3 {
		t.Errorf("%d recharges, want 3", n)
	}
	// The same content under another name would pay every row again: the
	// interrupted run resumed after midnight under the next day's name is
	// refused, naming the batch to resume.
	write(path, "operator,canumber,amount\n311,FLEET1,100\n311,FLEET2,100\n")
	if p := aopbatch(t, nil, args(path, "--batch", "nightly-2026-06-01")...); p.code != 0 {
		t.Fatalf("night 1: exit %d\n%s", p.code, p.stderr)
	}
	p := aopbatch(t, nil, args(path, "--batch", "nightly-2026-06-02")...)
	if p.code != 1 || !strings.Contains(p.stderr, "already batch nightly-2026-06-01") || !strings.Contains(p.stderr, "--pay-again") {
		t.Errorf("same content, new name: exit %d, want 1 naming the batch\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 5 {
		t.Fatalf("%d recharges, want 5", n)
	}
	// A file that really repeats each night says so. Its referenceids
	// differ from the first night's although the two ids share more than
	// the 12 characters a referenceid keeps of one.
	if p := aopbatch(t, nil, args(path, "--batch", "nightly-2026-06-02", "--pay-again")...); p.code != 0 {
		t.Errorf("--pay-again: exit %d, want 0\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 7 {
		t.Errorf("%d recharges in all, want 7", n)
	}

	// A batch that an earlier version made without --batch (its id derived
	// from the content) is resumed without one, keeping its referenceids.
	legacy := filepath.Join(dir, "legacy.csv")
	write(legacy, "operator,canumber,amount\n311,OLD1,10\n311,OLD2,20\n")
	hash, err := batch.HashFile(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, args(legacy, "--batch", batch.BatchIDFor(hash), "--dry-run")...); p.code != 0 {
		t.Fatalf("legacy batch: exit %d\n%s", p.code, p.stderr)
	}
	if p := aopbatch(t, nil, args(legacy)...); p.code != 0 || !strings.Contains(p.stderr, `msg="resuming batch" batch=`+batch.BatchIDFor(hash)) {
		t.Errorf("legacy batch without --batch: exit %d, want 0 resuming it\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 9 {
		t.Errorf("%d recharges in all, want 9", n)
	}

	// After a dry run nothing was paid: an edited file may go under a new
	// id, and the refusal says so.
	write(path, "operator,canumber,amount\n311,DRY1,10\n")
	if p := aopbatch(t, nil, args(path, "--batch", "dry-1", "--dry-run")...); p.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", p.code, p.stderr)
	}
	write(path, "operator,canumber,amount\n311,DRY1,11\n")
	p = aopbatch(t, nil, args(path, "--batch", "dry-1")...)
	if p.code != 1 || !strings.Contains(p.stderr, "Nothing of batch dry-1 was sent") {
		t.Errorf("edited after a dry run: exit %d, want 1 saying a new id is safe\n%s", p.code, p.stderr)
	}
}
