package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A row that repeats the referenceid of another line of its file is often
// that line's payment listed twice. Rejected for a problem of its own too
// (an amount with three decimals, say), it was rejected for that problem,
// not as a repeat, and export --state rejected offered it under a blank
// referenceid: its amount fixed and the export run as a new file, the
// payment line 2 made was made again.
func TestExportLeavesOutARepeatRejectedForAnotherProblem(t *testing.T) {
	sb := sandbox(t, nil)
	dir := t.TempDir()
	db := filepath.Join(dir, "l.db")
	in := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(in, []byte("operator,canumber,amount,referenceid\n"+
		"311,DUPCA2,20.00,DUP-REF-1\n"+
		"311,DUPCA2,20.001,DUP-REF-1\n"+
		"311,OTHERCA3,30.00,OTHER-REF-3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := aopbatch(t, nil, runArgs(in, db, sb.URL, "--max-reject-rate", "1")...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (line 3 rejected)\n%s", p.code, p.stderr)
	}
	ex := aopbatch(t, nil, "export", "--ledger", db, "--state", "rejected")
	if ex.code != 0 {
		t.Fatalf("export: exit %d\n%s", ex.code, ex.stderr)
	}
	if strings.Contains(ex.stdout, "DUPCA2") || !strings.Contains(ex.stderr, "left out 1 rejected rows that repeat the referenceid") {
		t.Errorf("export offers line 3, which repeats paid line 2's referenceid, under a blank referenceid:\n%s%s", ex.stdout, ex.stderr)
	}
	// What a person fixing the amount would then run.
	fixed := filepath.Join(dir, "fixed.csv")
	if err := os.WriteFile(fixed, []byte(strings.ReplaceAll(ex.stdout, "20.001", "20.00")), 0o644); err != nil {
		t.Fatal(err)
	}
	if strings.Count(ex.stdout, "\n") > 1 {
		aopbatch(t, nil, runArgs(fixed, db, sb.URL, "--generate-refs", "--batch", "fixed-rejects", "--max-reject-rate", "1")...)
	}
	if n := sb.Stats().Recorded; n != 2 {
		t.Errorf("the sandbox recorded %d transactions, want 2 (lines 2 and 4): DUPCA2's Rs 20.00 paid twice", n)
	}
}
