package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// TestExportFailedWarnsWithoutStatement: a row the provider answered
// failed and charged after all shows only on its statement. export
// --state failed without --statement cannot leave it out, and under a
// new referenceid it would be paid twice: the export says so, and says
// nothing of the kind once a statement was checked.
func TestExportFailedWarnsWithoutStatement(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, func(c *aoptest.Config) { c.FailRate = 1 })
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(3, "EXF"))
	if p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...); p.code != 2 {
		t.Fatalf("run: exit %d, want 2 (every row failed)\n%s", p.code, p.stderr)
	}
	dir := filepath.Dir(db)
	const warning = "not checked against a provider statement"
	p := aopbatch(t, nil, "export", "--ledger", db, "--state", "failed", "--out", filepath.Join(dir, "retry.csv"))
	if p.code != 0 || !strings.Contains(p.stderr, warning) || !strings.Contains(p.stderr, "--statement FILE") {
		t.Errorf("export --state failed without --statement: exit %d, want 0 warning %q and naming --statement FILE\n%s", p.code, warning, p.stderr)
	}
	st := filepath.Join(dir, "statement.csv")
	if err := os.WriteFile(st, []byte("refid,txnid,amount,status,refunded,operatorid,dateadded\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = aopbatch(t, nil, "export", "--ledger", db, "--state", "failed", "--statement", st, "--out", filepath.Join(dir, "retry2.csv"))
	if p.code != 0 || strings.Contains(p.stderr, warning) {
		t.Errorf("export --state failed --statement: exit %d, want 0 without %q\n%s", p.code, warning, p.stderr)
	}
	// That statement has no line to date it by: it may be of other days.
	if !strings.Contains(p.stderr, "names none of batch") {
		t.Errorf("export with a statement naming none of the batch's rows, undated, does not warn:\n%s", p.stderr)
	}
	// A statement of other days cannot show a late charge of this batch:
	// trusted, it would pass the rows as checked.
	old := filepath.Join(dir, "old.csv")
	if err := os.WriteFile(old, []byte("refid,txnid,amount,status,refunded,operatorid,dateadded\nOTHER-1,T1,10.00,success,0,OP1,2020-01-01 10:00:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "retry3.csv")
	p = aopbatch(t, nil, "export", "--ledger", db, "--state", "failed", "--statement", old, "--out", out)
	if p.code != 1 || !strings.Contains(p.stderr, "names none of batch") || !strings.Contains(p.stderr, "the statement of the days the batch was sent") {
		t.Errorf("export with another day's statement: exit %d, want 1 saying it names none of the batch's rows\n%s", p.code, p.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("export with another day's statement wrote %s", out)
	}
}
