package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// TestRunOutlivesItsReader: `aopbatch run ... 2>&1 | head -3` closed the
// pipe after three lines, and the next line the run wrote killed it
// (SIGPIPE) mid-way, its rows left pending and unknown, no summary (a new
// user's walkthrough). A run finishes whoever reads its output.
func TestRunOutlivesItsReader(t *testing.T) {
	t.Parallel()
	sb := sandbox(t, nil)
	db, csvPath := batchFiles(t)
	rows := goodRows(20, "PIPE")
	writeCSV(t, csvPath, rows)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader gone before the first line
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := aopbatchCmd(ctx, nil, runArgs(csvPath, db, sb.URL)...)
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	w.Close()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("run with its output's reader gone: %v (exit %d), want exit 0", err, code)
	}
	if c := countStates(rowsOf(t, db)); c[ledger.StateSuccess] != len(rows) {
		t.Errorf("states %v, want all %d success", c, len(rows))
	}
}
