package reports

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// A retry that failed in turn pays the row behind it too. Once that row
// is found charged (reconcile), the retry's failed row must not be
// offered again: its export leaves it out and its report says not to
// send it (a money-safety review: exported and run, it paid twice).
func TestFailedRetryOfARowFoundChargedIsNotOffered(t *testing.T) {
	ctx := context.Background()
	l := ledgerAtT0(t)
	record := func(id string, header []string, rows []ledger.IngestRow) ledger.Batch {
		t.Helper()
		o := ledger.NewOwner(id)
		b, err := l.Acquire(ctx, ledger.NewBatch{ID: id, ContentHash: "hash-" + id, Source: id + ".csv", Header: header}, o, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		in, err := l.BeginIngest(ctx, b, o, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.AddMany(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := in.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		w, err := l.NewWriter(ctx, b.Seq, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Problem != nil {
				continue
			}
			if err := w.MarkInflight(ctx, r.Line, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.Record(ledger.Update{Line: r.Line, To: ledger.StateFailed, Code: 13, Message: "wrong canumber"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, id, o); err != nil {
			t.Fatal(err)
		}
		b, err = l.Batch(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	row := func(line int, ref, retryOf string, paise int64) ledger.IngestRow {
		return ledger.IngestRow{Line: line, ReferenceID: ref, Operator: 12, CANumber: "98000000" + ref[len(ref)-2:], AmountPaise: paise,
			Request: []byte(`{"operator":12,"canumber":"98000000` + ref[len(ref)-2:] + `","amount":10,"referenceid":"` + ref + `"}`), RetryOf: retryOf}
	}
	header := []string{"operator", "canumber", "amount", "referenceid"}
	orig := record("orig", header, []ledger.IngestRow{row(2, "P-01", "", 1000), row(3, "P-02", "", 2000)})
	retry := record("retry", append(header, "retryof"), []ledger.IngestRow{row(2, "R-01", "orig:2", 1000), row(3, "R-02", "orig:3", 2000)})
	// Another file of the same row, rejected for its amount: it names
	// the row it retries all the same.
	bad := ledger.IngestRow{Line: 2, ReferenceID: "S-01", Operator: 12, CANumber: "9800000001", RetryOf: "orig:2",
		Raw: []string{"12", "9800000001", "10.001", "S-01", "orig:2"}, Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "more than 2 decimals"}}
	other := record("other", append(header, "retryof"), []ledger.IngestRow{bad})
	// The provider's statement shows P-01 charged after all.
	o := ledger.NewOwner("reconcile")
	if _, err := l.Acquire(ctx, ledger.NewBatch{ID: "orig"}, o, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.Correct(ctx, orig.Seq, o, ledger.Correction{Line: 2, From: ledger.StateFailed, To: ledger.StateSuccess,
		Evidence: ledger.Attempt{Kind: "status", At: t0, Code: 1, Class: "success"}, Message: "charged after all"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, "orig", o); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	res, err := Export(ctx, l, retry, ledger.StateFailed, &buf, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.Retries != 1 || !strings.Contains(strings.Join(res.RetryLines, ";"), "line 2: it retries batch orig line 2, success now") ||
		strings.Contains(buf.String(), "retry:2") {
		t.Errorf("export of the retry's failed rows: %+v\n%s\nwant line 2 left out, line 3 offered", res, buf.String())
	}
	buf.Reset()
	if res, err := Export(ctx, l, other, ledger.StateRejected, &buf, ExportOptions{}); err != nil || res.Rows != 0 || res.Retries != 1 {
		t.Errorf("export of the rejected retry: %+v %v\n%s\nwant it left out", res, err, buf.String())
	}
	so, err := Build(ctx, l, other, Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(so.Attention.Actions, "\n"); !strings.Contains(a, "nothing to submit from this batch") {
		t.Errorf("rejected retry's report:\n%s\nwant nothing to submit", a)
	}
	buf.Reset()
	if err := so.writeRejects(ctx, l, &buf); err != nil || !strings.Contains(buf.String(), "it retries batch orig line 2, success now: do not send it\",no") {
		t.Errorf("rejects.csv of the rejected retry: %v\n%s\nwant it marked fixable no", err, buf.String())
	}
	s, err := Build(ctx, l, retry, Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	actions := strings.Join(s.Attention.Actions, "\n")
	if !strings.Contains(actions, "1 row failed (₹10.00) that retried a row found charged or not settled since (export names each): do NOT send them again") ||
		!strings.Contains(actions, "1 row failed (₹20.00, nothing taken): aopbatch export --state failed") {
		t.Errorf("retry's report:\n%s\nwant line 2 not to send, line 3 to export", actions)
	}
}
