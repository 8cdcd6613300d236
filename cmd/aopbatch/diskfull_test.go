package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aopbatch/aopbatch/batch"
	"github.com/aopbatch/aopbatch/ledger"
)

// fileSizeEnv makes the aopbatch subprocess run under RLIMIT_FSIZE of that
// many bytes: no file it writes may grow past it, as on a full disk.
const fileSizeEnv = "AOPBATCH_TEST_FSIZE"

// limitFileSize applies fileSizeEnv in the subprocess, before main.
func limitFileSize() {
	v := os.Getenv(fileSizeEnv)
	if v == "" {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: set RLIMIT_FSIZE:", err)
		os.Exit(99)
	}
}

// TestLedgerFullMidRun: the ledger cannot grow (a full disk, here a file
// size limit) while rows are being sent. The run stops with exit 3 and a
// message naming the ledger and the cause; the same command, with room
// again, resumes and finishes. Against the sandbox's own record: every row
// charged exactly once, every row final, and no row sent blind a second
// time (the sandbox never answered 18).
func TestLedgerFullMidRun(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(3000, "FULL")
	writeCSV(t, csvPath, rows)
	// The file recorded first, with room: the limit then falls on the
	// outcomes (and the dispatches before them), mid-run.
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL, "--dry-run")...); p.code != 0 {
		t.Fatalf("dry run: exit %d\n%s", p.code, p.stderr)
	}
	if _, err := os.Stat(db + "-wal"); err == nil {
		t.Fatal("the dry run left a WAL: the limit would not fall where this test means")
	}
	// The WAL starts empty and may grow to 512 KiB: a few commits.
	const limit = 512 << 10
	p := aopbatch(t, []string{fileSizeEnv + "=" + strconv.Itoa(limit)}, runArgs(csvPath, db, sb.URL, "--workers", "4")...)
	if p.code != 3 {
		t.Fatalf("under the limit: exit %d, want 3\n%s", p.code, p.stderr)
	}
	charged := sb.Stats().Recorded
	if charged == 0 || charged >= int64(len(rows)) {
		t.Fatalf("the limit fell at a useless moment: %d of %d rows charged", charged, len(rows))
	}
	abs, _ := filepath.Abs(db)
	last := lastLine(p.stderr)
	t.Logf("charged %d of %d; the run said: %s", charged, len(rows), last)
	if !strings.Contains(last, abs) || !strings.Contains(last, "file too large") {
		t.Errorf("the final message does not name the ledger (%s) and the cause:\n%s", abs, last)
	}

	p = aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("rerun with room: exit %d, want 0\n%s", p.code, p.stderr)
	}
	_, byRef, all := ledgerRows(t, db)
	if len(all) != len(rows) {
		t.Fatalf("ledger holds %d rows, want %d", len(all), len(rows))
	}
	for _, r := range rows {
		if got := byRef[r.ref].State; got != ledger.StateSuccess {
			t.Errorf("ref %s: %s, want success", r.ref, got)
		}
		if n := sb.Charged(r.ref); n != 1 {
			t.Errorf("ref %s charged %d times, want 1", r.ref, n)
		}
	}
	if n := sb.Stats().ByCode[18]; n != 0 {
		t.Errorf("the sandbox answered 18 (duplicate) %d times: rows were sent again blind", n)
	}
	if n := sb.Stats().Recorded; n != int64(len(rows)) {
		t.Errorf("sandbox recorded %d transactions, want %d", n, len(rows))
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestLedgerStopOnPostgres: a PostgreSQL ledger that cannot be written is
// named by its URL, without the password, and no file path or disk is
// made up for it.
func TestLedgerStopOnPostgres(t *testing.T) {
	stop := &batch.StopError{Reason: batch.StopLedger, Detail: "ledger write: connection refused"}
	err := explainLedgerStop("postgres://aop:s3cret@db.internal:5432/aopbatch", stop)
	msg := err.Error()
	for _, want := range []string{"postgres://aop@db.internal:5432/aopbatch", "connection refused", "database server"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	for _, not := range []string{"s3cret", "make room", "/postgres:"} {
		if strings.Contains(msg, not) {
			t.Errorf("%q says %q", msg, not)
		}
	}
}

// TestLedgerFullWhileRecording: the ledger cannot grow while the file is
// being recorded. The run sends nothing and says which ledger could not
// be written and why, as a stop mid-run does, not only SQLite's "disk
// I/O error"; with room again the same command sends the file.
func TestLedgerFullWhileRecording(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(20000, "FREC")
	writeCSV(t, csvPath, rows)
	p := aopbatch(t, []string{fileSizeEnv + "=" + strconv.Itoa(256<<10)}, runArgs(csvPath, db, sb.URL)...)
	if p.code != 1 {
		t.Fatalf("under the limit: exit %d, want 1\n%s", p.code, p.stderr)
	}
	if n := sb.Stats().Recharges; n != 0 {
		t.Fatalf("%d recharges sent, want none", n)
	}
	abs, _ := filepath.Abs(db)
	last := lastLine(p.stderr)
	if !strings.Contains(last, abs) || !strings.Contains(last, "file too large") || !strings.Contains(last, "nothing was sent") {
		t.Errorf("the message does not name the ledger (%s), the cause and that nothing was sent:\n%s", abs, last)
	}
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 0 {
		t.Fatalf("rerun with room: exit %d, want 0\n%s", p.code, p.stderr)
	}
	wantOnce(t, rows, "charged", sb.Charged)
}
