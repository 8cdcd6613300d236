package main

import (
	"os"
	"strings"
	"testing"
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
