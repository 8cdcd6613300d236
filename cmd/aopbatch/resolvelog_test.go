package main

import (
	"regexp"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/batch/aop/aoptest"
)

// TestRunSaysWhenItChecksUnsettledRows: a run that ends by asking the
// provider about rows of unknown outcome (its own pending rows, or rows a
// dead process left and another took over) says so in its log, with how
// many, and says how many are still unsettled when it is done. On the
// night of a takeover the survivor's log was silent from its last send
// to its exit, and the operator could not tell that the dead process's
// rows had been checked, by whom or when.
func TestRunSaysWhenItChecksUnsettledRows(t *testing.T) {
	sb := sandbox(t, func(c *aoptest.Config) {
		c.PendingRate = 0.5
		c.PendingDelay = 300 * time.Millisecond
	})
	db, csvPath := batchFiles(t)
	writeCSV(t, csvPath, goodRows(20, "U"))
	p := aopbatch(t, nil, runArgs(csvPath, db, sb.URL)...)
	if p.code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", p.code, p.stdout, p.stderr)
	}
	start := regexp.MustCompile(`msg="checking rows of unknown outcome with the provider[^"]*" rows=([1-9][0-9]*)`)
	if !start.MatchString(p.stderr) {
		t.Errorf("the run does not say it checks its unsettled rows with the provider, nor how many:\n%s", p.stderr)
	}
	end := regexp.MustCompile(`msg="rows of unknown outcome checked with the provider" enquiries=[1-9][0-9]* still_unsettled=0`)
	if !end.MatchString(p.stderr) {
		t.Errorf("the run does not say how the check of its unsettled rows ended:\n%s", p.stderr)
	}
}
