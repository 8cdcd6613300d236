package reports

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
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
