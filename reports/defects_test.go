package reports

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// oneBatch is a ledger holding one batch of the given header and rows,
// ingested as they are (rows with a Problem are rejected), nothing sent.
func oneBatch(t *testing.T, header []string, rows []ledger.IngestRow) (*ledger.Ledger, ledger.Batch) {
	t.Helper()
	ctx := context.Background()
	l, err := ledger.Open(ctx, filepath.Join(t.TempDir(), "l.db"), ledger.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	owner := ledger.NewOwner("test")
	b, err := l.Acquire(ctx, ledger.NewBatch{ID: "one", ContentHash: "h", Source: "one.csv", Header: header}, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.BeginIngest(ctx, b, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, _, err := in.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, b.ID, owner); err != nil {
		t.Fatal(err)
	}
	b, err = l.Batch(ctx, "one")
	if err != nil {
		t.Fatal(err)
	}
	return l, b
}

// Defect 8: the reader takes "CA<no-break space>Number" as canumber, so the
// reports must mask it too: one normaliser everywhere.
func TestMaskPIIUsesTheReadersColumnNames(t *testing.T) {
	header := []string{"operator", "CA\u00a0Number", "amount", "referenceid", "cell\u2003number", "User\u200bName"}
	raw := []string{"311", "DL12CB4685", "10.005", "R1", "9876543210", "RAVI KUMAR"}
	l, b := oneBatch(t, header, []ledger.IngestRow{{Line: 2, Raw: raw,
		Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: "more than 2 decimals"}}})
	ctx := context.Background()
	s, err := Build(ctx, l, b, Options{MaskPII: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Write(ctx, l, dir, s, []string{"csv"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, FileRejects))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"DL12CB4685", "9876543210", "RAVI KUMAR"} {
		if strings.Contains(string(got), v) {
			t.Errorf("rejects.csv with --mask-pii holds %q unmasked:\n%s", v, got)
		}
	}
}
