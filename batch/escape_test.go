package batch

import (
	"strings"
	"testing"
)

// The reader takes off the one "'" that aopbatch's CSV writers put before
// a formula-looking cell, and nothing else (SPEC section 6).
func TestReaderRemovesTheFormulaEscape(t *testing.T) {
	in := "operator,canumber,amount,referenceid,cellNumber,userName,RegistrationID\n" +
		"311,'=1+1,10,R1,'+919800000014,'@ASHA,AOP-1\n" +
		"311,''=x,10,R2,'9800000014,'-ASHA,AOP-1\n"
	rd, err := NewReader(strings.NewReader(in), ReaderOptions{Latitude: "1", Longitude: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][3]string{{"=1+1", "+919800000014", "@ASHA"}, {"''=x", "'9800000014", "-ASHA"}} {
		row, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		bf := row.Request.BillFetch
		if got := [3]string{row.Request.CANumber, bf.CellNumber, bf.UserName}; got != want {
			t.Errorf("line %d: read %q, want %q", row.Line, got, want)
		}
		if row.Raw[1] != want[0] {
			t.Errorf("line %d: raw canumber %q, want %q", row.Line, row.Raw[1], want[0])
		}
	}
}
