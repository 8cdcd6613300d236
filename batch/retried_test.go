package batch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// A row that retries another (retryof) is sent only when this ledger holds
// the row it retries and that row is one to pay again (failed, refunded,
// rejected, conflict); otherwise it is rejected, naming why, and the rest
// of the file goes on.
func TestIngestChecksWhatARetryRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openLedger(t)
	orig := writeRows(t, 6, "1,CAX,abc,BAD-1") // line 8: rejected, a bad amount
	o := ingestOpts(NoControls())
	o.BatchID = "orig"
	res, err := Ingest(ctx, l, orig, o)
	if err != nil {
		t.Fatal(err)
	}
	// Lines 2-7 as a run may leave them: 2 success, 3 failed, 4 pending,
	// 5 refunded, 6 queued, 7 held.
	w, err := l.NewWriter(ctx, res.Batch.Seq, o.Owner)
	if err != nil {
		t.Fatal(err)
	}
	for line, to := range map[int]ledger.State{2: ledger.StateSuccess, 3: ledger.StateFailed, 4: ledger.StatePending, 5: ledger.StateFailed} {
		if err := w.MarkInflight(ctx, line, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(ledger.Update{Line: line, To: to, Code: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Record(ledger.Update{Line: 5, To: ledger.StateRefunded, Code: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(ledger.Update{Line: 7, To: ledger.StateHeld, Code: -1, Message: "operator down"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, "orig", o.Owner); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid,Retry Of\n")
	for i, of := range []string{"orig:2", "orig:3", "orig:4", "orig:5", "orig:6", "orig:7", "orig:8", "orig:99", "elsewhere:3", "retry:2", "orig:x", "", "orig:3"} {
		fmt.Fprintf(&b, "1,CA1,10.00,N-%d,%s\n", i, of)
	}
	retry := filepath.Join(t.TempDir(), "retry.csv")
	if err := os.WriteFile(retry, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	o.BatchID, o.Owner = "retry", ledger.NewOwner("retry")
	if _, err := Ingest(ctx, l, retry, o); err != nil {
		t.Fatal(err)
	}
	rb, err := l.Batch(ctx, "retry")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line  int
		state ledger.State
		code  string
		says  string
	}{
		{2, ledger.StateRejected, CodeBadRetryOf, "batch orig line 2 is success now: it was paid"},
		{3, ledger.StateQueued, "", ""},
		{4, ledger.StateRejected, CodeBadRetryOf, "is pending now: it may have been charged"},
		{5, ledger.StateQueued, "", ""}, // refunded
		{6, ledger.StateRejected, CodeBadRetryOf, "is queued now: it is still that batch's to send"},
		{7, ledger.StateRejected, CodeBadRetryOf, "is held now"},
		{8, ledger.StateQueued, "", ""}, // rejected: never sent
		{9, ledger.StateRejected, CodeBadRetryOf, "batch orig has no row on line 99"},
		{10, ledger.StateRejected, CodeRetryElsewhere, "this ledger holds no batch elsewhere"},
		{11, ledger.StateRejected, CodeBadRetryOf, "a row of this same batch"},
		{12, ledger.StateRejected, "bad_retryof", `value "orig:x": must be BATCH:LINE`},
		{13, ledger.StateRejected, CodeMissingValue, "names none"}, // the column is there, the cell empty
		{14, ledger.StateRejected, "duplicate_retryof", "retries the same row as line 3 of this file"},
	} {
		r, err := l.Row(ctx, rb.Seq, tc.line)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != tc.state || r.ErrorCode != tc.code || !strings.Contains(r.Message, tc.says) {
			t.Errorf("line %d: %s %s %q, want %s %s saying %q", tc.line, r.State, r.ErrorCode, r.Message, tc.state, tc.code, tc.says)
		}
		if tc.state == ledger.StateRejected && (r.ErrorColumn != "retryof" || len(r.Raw) != 5) {
			t.Errorf("line %d: column %q, %d cells kept; want retryof and all 5", tc.line, r.ErrorColumn, len(r.Raw))
		}
	}
}
