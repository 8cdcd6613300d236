package batch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

// Issue 15, defect 4: a row rejected for one cell keeps what was valid in
// the others, so the reports show its referenceid, operator, canumber and
// amount instead of blanks and 0.00.
func TestRejectedRowKeepsItsValidCells(t *testing.T) {
	body := "operator,canumber,amount,referenceid,userName\n" +
		"311,DL12CB4685,1885.99,R-1,\"BAD\x01NAME\"\n" + // only the userName is bad
		"x12,MH01AB1234,10.005,R 2,ok\n" + // operator, amount and referenceid bad
		"312,MH01AB0003,20.00,R-3,ok\n" +
		"311,AB,12,999.00,M98,ok\n" // one cell too many: none is trusted
	path := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLedger(t)
	ctx := context.Background()
	res, err := Ingest(ctx, l, path, ingestOpts(NoControls()))
	if err != nil {
		t.Fatal(err)
	}
	type kept struct {
		ref   string
		op    int64
		ca    string
		paise int64
		state ledger.State
	}
	want := map[int]kept{
		2: {"R-1", 311, "DL12CB4685", 188599, ledger.StateRejected},
		3: {"", 0, "MH01AB1234", 0, ledger.StateRejected},
		4: {"R-3", 312, "MH01AB0003", 2000, ledger.StateQueued},
		5: {"", 0, "", 0, ledger.StateRejected},
	}
	err = l.EachRow(ctx, res.Batch.Seq, func(r *ledger.Row) error {
		got := kept{r.ReferenceID, r.Operator, r.CANumber, r.AmountPaise, r.State}
		if got != want[r.Line] {
			t.Errorf("line %d: %+v, want %+v", r.Line, got, want[r.Line])
		}
		if r.State == ledger.StateRejected && r.Request != nil {
			t.Errorf("line %d: a rejected row has a request body", r.Line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Paise != 2000 || !strings.Contains(res.FirstProblems[0], "username") {
		t.Errorf("result %+v: the amount to send counts the queued row only", res)
	}
}
