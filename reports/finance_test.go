package reports

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// A rejected row that repeats the referenceid of another line of the file
// may be that line's payment a second time (line 15 of the fixture repeats
// line 2, paid). Offered for sending under a new referenceid, it is paid
// twice; rejects.csv marks it "review", and the export must not offer it
// either.
func TestExportLeavesOutARepeatedReferenceID(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	res, err := Export(context.Background(), f.l, f.b, ledger.StateRejected, &buf, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "DL12CB4685") {
		t.Errorf("export offers line 15 (a repeat of paid line 2's referenceid) for sending under a new referenceid:\n%s", buf.String())
	}
	if res.Repeated != 1 {
		t.Errorf("Repeated = %d, want 1 (%+v)", res.Repeated, res)
	}
	s, err := Build(context.Background(), f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range s.Attention.Actions {
		if strings.Contains(a, "rejected") {
			found = true
			if !strings.Contains(a, `1 marked fixable "review"`) {
				t.Errorf("the rejected rows' action does not warn of the repeated referenceid: %q", a)
			}
		}
	}
	if !found {
		t.Error("no action for the rejected rows")
	}
}

// A run killed while it recorded the file leaves the batch with part of
// the file's rows (Batch.Ready false). Its reports are read the next
// morning without the warning the command printed: they must say that
// their figures are of part of the file, not claim to be the batch's.
func TestReportOfAPartlyRecordedFile(t *testing.T) {
	ctx := context.Background()
	// Two rows of the file recorded, both rejected (final), then the run
	// died: no Finish.
	var rows []ledger.IngestRow
	for line := 2; line <= 3; line++ {
		rows = append(rows, ledger.IngestRow{Line: line, ReferenceID: fmt.Sprintf("P%d", line), Raw: []string{"311", "CA", "x", "P"},
			Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "not a number"}})
	}
	l, b := recordRows(t, "part", fixtureHeader, rows, false)
	if b.Ready {
		t.Fatal("fixture: the batch is wholly recorded")
	}
	s, err := Build(ctx, l, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Complete {
		t.Error("report.json says complete for a batch whose file was not wholly recorded")
	}
	if s.FileRecorded {
		t.Error("report.json says the file was wholly recorded")
	}
	v := s.view()
	if !strings.Contains(v.Verdict, "part of the file") || v.Tone == "ok" {
		t.Errorf("verdict %q (%s) does not say its figures are of part of the file", v.Verdict, v.Tone)
	}
	if len(s.Attention.Actions) == 0 || !strings.Contains(s.Attention.Actions[0], "aopbatch run") {
		t.Errorf("first action %q does not say to record the rest of the file", s.Attention.Actions)
	}
	var m bytes.Buffer
	if err := s.writeMetrics(&m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.String(), `aopbatch_batch_recorded{batch="part"} 0`) {
		t.Errorf("metrics do not say the file was not wholly recorded:\n%s", m.String())
	}
}

// TestReportOfACopyCutShort: a batch a ledger copy left not ready holds
// rows a request moved (a run never sends a batch before its file is
// recorded): the report says so, and that the same copy run again
// finishes it. aopbatch run would be refused.
func TestReportOfACopyCutShort(t *testing.T) {
	ctx := context.Background()
	l, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ledger.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	now := time.Now()
	im, err := l.ImportBatch(ctx, ledger.Batch{ID: "copied", ContentHash: "h", Source: "c.csv", Header: fixtureHeader, Ready: true, Created: now, RowsTotal: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Rows(ctx, []ledger.Row{{Line: 2, ReferenceID: "C2", Operator: 311, CANumber: "CA2", AmountPaise: 500,
		Request: []byte(`{}`), State: ledger.StateSuccess, ResponseCode: 1, Attempts: 1, FirstSent: now, Updated: now}}); err != nil {
		t.Fatal(err)
	}
	b, err := l.Batch(ctx, "copied")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(ctx, l, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.view(); !strings.Contains(v.Verdict, "a ledger copy stopped part way") || v.Tone == "ok" {
		t.Errorf("verdict %q (%s) does not say a copy stopped part way", v.Verdict, v.Tone)
	}
	if len(s.Attention.Actions) == 0 || !strings.Contains(s.Attention.Actions[0], "run the same aopbatch ledger copy again") {
		t.Errorf("first action %q does not say to run the copy again", s.Attention.Actions)
	}
}

// Rows without a response code or an error code group by state, and the
// line's meaning was the first row's own message: 342 queued rows never
// tried read "the provider answered 429 (throttled) to 2 tries over 3s"
// because one of them had; two HTTP 503s and an HTTP 500 read "no
// response: connection closed after the request was sent".
func TestByCodeMeaningIsTrueOfEveryRow(t *testing.T) {
	l, b := oneBatch(t, []string{"operator", "canumber", "amount", "referenceid"}, []ledger.IngestRow{
		{Line: 2, ReferenceID: "U1", Operator: 311, CANumber: "CA1", AmountPaise: 100, Request: []byte(`{}`)},
		{Line: 3, ReferenceID: "U2", Operator: 311, CANumber: "CA2", AmountPaise: 200, Request: []byte(`{}`)},
		{Line: 4, ReferenceID: "U3", Operator: 311, CANumber: "CA3", AmountPaise: 300, Request: []byte(`{}`)},
		{Line: 5, ReferenceID: "U4", Operator: 311, CANumber: "CA4", AmountPaise: 400, Request: []byte(`{}`)},
		{Line: 6, ReferenceID: "U5", Operator: 311, CANumber: "CA5", AmountPaise: 500, Request: []byte(`{}`)},
	})
	ctx := context.Background()
	owner := ledger.NewOwner("test")
	st := l.(ledger.Store)
	if _, err := st.Acquire(ctx, ledger.NewBatch{ID: b.ID, ContentHash: b.ContentHash, Source: b.Source, Header: b.Header}, owner, time.Hour); err != nil {
		t.Fatal(err)
	}
	w, err := st.NewWriter(ctx, b.Seq, owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []ledger.Update{
		{Line: 2, To: ledger.StateUnknown, Code: -1, Message: "no response: connection closed after the request was sent"},
		{Line: 3, To: ledger.StateUnknown, Code: -1, Message: "HTTP 503 with a body that is not a JSON object"},
	} {
		if err := w.MarkInflight(ctx, u.Line, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Record(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Release(ctx, b.ID, owner); err != nil {
		t.Fatal(err)
	}
	s, err := Build(ctx, l, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.ByCode {
		switch c.State {
		case ledger.StateUnknown:
			if strings.Contains(c.Message, "connection closed") || strings.Contains(c.Message, "503") {
				t.Errorf("%d %s rows, meaning %q: true of one of them only", c.Rows, c.State, c.Message)
			}
		}
	}
}

// Reports written again into a directory that holds a reconciliation from
// an earlier report with a statement (the nightly run --report DIR after
// a report --statement --out DIR) left that reconciliation.csv beside the
// new files: its states and categories disagree with the new rows.csv and
// report.json, which say no statement was reconciled.
func TestRewriteWithoutStatementLeavesNoStaleReconciliation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, _, dir := reconciled(t, f, "", f.options(false))
	if _, err := os.Stat(filepath.Join(dir, FileReconciliation)); err != nil {
		t.Fatal(err)
	}
	s, err := Build(ctx, f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(ctx, f.l, dir, s, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileReconciliation)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s from the earlier reconciliation is still beside reports that reconciled nothing (stat: %v)", FileReconciliation, err)
	}
}
