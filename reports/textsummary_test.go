package reports

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTextSummaryReconciliationAddsUp: the text summary's reconciliation
// line accounts for every row of the batch, so its figures add up to the
// row count a person sees on the line above (failed rows the provider
// never recorded, and rows never sent, included).
func TestTextSummaryReconciliationAddsUp(t *testing.T) {
	f := newFixture(t)
	s, _ := built(t, f, false, true)
	got := s.TextSummary()
	m := regexp.MustCompile(`(?m)^reconciliation of (\d+) rows: (.*)$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no 'reconciliation of N rows:' line:\n%s", got)
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	if total != s.Counts.Total {
		t.Errorf("line names %d rows, the batch has %d", total, s.Counts.Total)
	}
	var sum int64
	for _, part := range strings.Split(m[2], ", ") {
		n, err := strconv.ParseInt(strings.Fields(part)[0], 10, 64)
		if err != nil {
			t.Fatalf("part %q of %q is not 'N what'", part, m[2])
		}
		sum += n
	}
	if sum != total {
		t.Errorf("the line's figures add up to %d, not %d:\n%s", sum, total, got)
	}
	r := s.Reconciliation
	if r.NotSent == 0 || r.FailedNotInStatement == 0 {
		t.Fatalf("fixture has no not-sent (%d) or failed-not-in-statement (%d) rows: the test proves nothing", r.NotSent, r.FailedNotInStatement)
	}
	if !strings.Contains(got, "statement: ") || !strings.Contains(got, "missing in ledger") {
		t.Errorf("no statement line:\n%s", got)
	}
}
