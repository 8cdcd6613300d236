package reports

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
	"github.com/aopbatch/aopbatch/ledger/sqlite"
)

// A rejected row whose amount was never read counts as nothing in the
// rejected sum, whatever column it was rejected for: a row with more
// cells than the header (an unquoted 1,234.00), or one rejected for its
// operator before its bad amount. The rejected rows' action must count
// every such row, or the sum reads as the file's when it is not.
// ledgerAtT0 is a new SQLite ledger whose clock stands at t0.
func ledgerAtT0(t *testing.T) ledger.Store {
	t.Helper()
	l, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ledger.db"), sqlite.Options{Now: func() time.Time { return t0 }, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestRejectedActionCountsEveryUnreadAmount(t *testing.T) {
	ctx := context.Background()
	l := ledgerAtT0(t)
	owner := ledger.NewOwner("test")
	header := []string{"operator", "canumber", "amount", "referenceid"}
	b, err := l.Acquire(ctx, ledger.NewBatch{ID: "u1", ContentHash: "hash-u1", Source: "u1.csv", Header: header}, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.BeginIngest(ctx, b, owner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rows := []ledger.IngestRow{
		{Line: 2, ReferenceID: "U-1", Operator: 12, CANumber: "9800000001", Raw: []string{"12", "9800000001", "10.005", "U-1"},
			Problem: &ledger.Problem{Code: "bad_amount", Column: "amount", Message: `line 2, column "amount", value "10.005": more than 2 decimals`}},
		{Line: 3, Raw: []string{"12", "9800000002", "1", "234.00", "U-2"},
			Problem: &ledger.Problem{Code: "field_count", Message: "line 3: wrong number of cells: the header has 4, this row 5"}},
		{Line: 4, ReferenceID: "U-3", CANumber: "9800000003", Raw: []string{"abc", "9800000003", "10.005", "U-3"},
			Problem: &ledger.Problem{Code: "bad_operator", Column: "operator", Message: `line 4, column "operator", value "abc": must be digits only`}},
		{Line: 5, ReferenceID: "U-4", CANumber: "9800000004", AmountPaise: 5000, Raw: []string{"abc", "9800000004", "50", "U-4"},
			Problem: &ledger.Problem{Code: "bad_operator", Column: "operator", Message: `line 5, column "operator", value "abc": must be digits only`}},
	}
	if _, err := in.AddMany(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err = l.Batch(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	s, err := Build(ctx, l, b, Options{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Attention.Actions {
		if strings.Contains(a, "rejected") {
			if !strings.Contains(a, "4 rows rejected (₹50.00, beside 3 whose amount could not be read)") {
				t.Errorf("rejected rows' action = %q, want it to count the 3 rows whose amount was not read", a)
			}
			return
		}
	}
	t.Errorf("no action for the rejected rows: %q", s.Attention.Actions)
}
