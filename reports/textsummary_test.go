package reports

import (
	"fmt"
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
	// matched holds failed and refunded rows the statement agrees on too:
	// the success among them is said, to set beside the batch's success.
	if r.MatchedSuccess.Rows == 0 || r.MatchedSuccess.Rows >= r.Matched ||
		!strings.Contains(got, fmt.Sprintf("%d matched (%s; %d of them success: %s)", r.Matched, inr(r.AmountsPaise[Matched]), r.MatchedSuccess.Rows, inr(r.MatchedSuccess.AmountPaise))) {
		t.Errorf("matched %d, of them success %+v: want the success among them said, and some not success in the fixture:\n%s", r.Matched, r.MatchedSuccess, got)
	}
	if r.NotSent == 0 || r.FailedNotInStatement == 0 {
		t.Fatalf("fixture has no not-sent (%d) or failed-not-in-statement (%d) rows: the test proves nothing", r.NotSent, r.FailedNotInStatement)
	}
	if !strings.Contains(got, "statement: ") || !strings.Contains(got, "missing in ledger") {
		t.Errorf("no statement line:\n%s", got)
	}
}
