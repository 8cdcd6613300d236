package reports

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"github.com/aopbatch/aopbatch/ledger"
)

// report.xlsx read back with excelize: every sheet, identifiers as text,
// amounts as numbers in a rupee format, header rows frozen and filtered.
func TestWorkbookReadsBack(t *testing.T) {
	f := newFixture(t)
	_, _, dir := reconciled(t, f, "", f.options(false))
	wb, err := excelize.OpenFile(filepath.Join(dir, FileXLSX))
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	want := []string{SheetSummary, SheetAtRisk, SheetReconciliation, SheetRows, SheetRejects}
	if got := wb.GetSheetList(); len(got) != len(want) {
		t.Fatalf("sheets %v, want %v", got, want)
	}
	for i, name := range wb.GetSheetList() {
		if name != want[i] {
			t.Errorf("sheet %d is %q, want %q", i, name, want[i])
		}
		panes, err := wb.GetPanes(name)
		if err != nil || !panes.Freeze || panes.YSplit != 1 {
			t.Errorf("sheet %s: header row not frozen: %+v %v", name, panes, err)
		}
		tables, err := wb.GetTables(name)
		if err != nil || len(tables) != 1 || tables[0].Range[:2] != "A1" {
			t.Errorf("sheet %s: no filtered table over the header: %+v %v", name, tables, err)
		}
	}
	rows, err := wb.GetRows(SheetRows)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(fixtureRows)+1 {
		t.Fatalf("Rows sheet has %d rows, want %d", len(rows), len(fixtureRows)+1)
	}
	// Line 4: REF004, 5.00 rupees, a formula-looking message kept as text.
	for cell, want := range map[string]struct {
		typ excelize.CellType
		raw string
	}{
		"B4": {excelize.CellTypeInlineString, "REF004"},
		"E4": {excelize.CellTypeUnset, "5"},
		"A4": {excelize.CellTypeUnset, "4"},
		"H4": {excelize.CellTypeInlineString, hyperlink},
	} {
		typ, err := wb.GetCellType(SheetRows, cell)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := wb.GetCellValue(SheetRows, cell, excelize.Options{RawCellValue: true})
		if typ != want.typ || raw != want.raw {
			t.Errorf("Rows!%s: type %v value %q, want %v %q", cell, typ, raw, want.typ, want.raw)
		}
	}
	if fm, _ := wb.GetCellFormula(SheetRows, "H4"); fm != "" {
		t.Errorf("Rows!H4 is a formula %q", fm)
	}
	shown, _ := wb.GetCellValue(SheetRows, "E4")
	if shown != "₹5.00" {
		t.Errorf("Rows!E4 shows %q, want ₹5.00", shown)
	}
	recon, _ := wb.GetRows(SheetReconciliation)
	if len(recon) != 1+len(fixtureRows)+3 {
		t.Errorf("Reconciliation sheet has %d rows, want every row and unheld statement line", len(recon))
	}
	// Every Summary row that counts rows shows their amount, and the
	// statement's line total shows what summary.md shows for it.
	summary, err := wb.GetRows(SheetSummary)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, row := range summary[1:] {
		row = append(row, make([]string, 4)...)
		if row[1] != "" && row[2] == "" {
			t.Errorf("Summary row %q counts %s rows but shows no amount", row[0], row[1])
		}
		if row[0] == "statement: lines" {
			lines = row[:3]
		}
	}
	if lines == nil {
		t.Fatal(`Summary has no "statement: lines" row`)
	}
	md := readFile(t, filepath.Join(dir, FileMarkdown))
	if want := fmt.Sprintf("| lines | %s | %s |", lines[1], lines[2]); !strings.Contains(md, want) {
		t.Errorf("Summary shows statement lines %q, summary.md has no %q", lines[1:], want)
	}
}

// A referenceid of 13 digits stays the text it is, not 1.79565E+12.
func TestWorkbookKeepsLongDigitIDsAsText(t *testing.T) {
	l, b := oneBatch(t, []string{"operator", "canumber", "amount", "referenceid"}, []ledger.IngestRow{
		{Line: 2, ReferenceID: "1795650000123", Operator: 311, CANumber: "0012345678901", AmountPaise: 188599, Request: []byte(`{}`)},
	})
	ctx := context.Background()
	s, err := Build(ctx, l, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Write(ctx, l, dir, s, []string{"xlsx"}); err != nil {
		t.Fatal(err)
	}
	wb, err := excelize.OpenFile(filepath.Join(dir, FileXLSX))
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	for cell, want := range map[string]string{"B2": "1795650000123", "D2": "0012345678901"} {
		typ, _ := wb.GetCellType(SheetRows, cell)
		got, _ := wb.GetCellValue(SheetRows, cell)
		if typ != excelize.CellTypeInlineString || got != want {
			t.Errorf("Rows!%s: type %v value %q, want text %q", cell, typ, got, want)
		}
	}
	if raw, _ := wb.GetCellValue(SheetRows, "E2", excelize.Options{RawCellValue: true}); raw != "1885.99" {
		t.Errorf("Rows!E2 holds %q, want exactly 1885.99", raw)
	}
}

// --mask-pii reaches the workbook: no cell of any sheet holds a personal
// value whole (the zip hides them from a byte search of the file).
func TestWorkbookMasksPII(t *testing.T) {
	f := newFixture(t)
	_, _, dir := reconciled(t, f, "", f.options(true))
	wb, err := excelize.OpenFile(filepath.Join(dir, FileXLSX))
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	for _, name := range wb.GetSheetList() {
		rows, err := wb.GetRows(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			for _, cell := range row {
				for _, v := range fullPII {
					if strings.Contains(cell, v) {
						t.Errorf("sheet %s holds %q in %q", name, v, cell)
					}
				}
			}
		}
	}
}

// The Rows sheet says what rows.csv says, the statement's operator
// reference included (it was blank in the workbook).
func TestWorkbookRowsMatchRowsCSV(t *testing.T) {
	f := newFixture(t)
	_, _, dir := reconciled(t, f, "", f.options(false))
	csvRows := readCSV(t, filepath.Join(dir, FileRows))
	x, err := excelize.OpenFile(filepath.Join(dir, FileXLSX))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	xr, err := x.GetRows(SheetRows)
	if err != nil {
		t.Fatal(err)
	}
	if len(xr) != len(csvRows) {
		t.Fatalf("workbook has %d rows, rows.csv %d", len(xr), len(csvRows))
	}
	opRef := slices.Index(RowsHeader, "operator_ref")
	refs := 0
	for i := 1; i < len(csvRows); i++ {
		c, w := csvRows[i], append(xr[i], make([]string, len(RowsHeader))...)
		if c[opRef] != w[opRef] {
			t.Errorf("line %s: rows.csv operator_ref %q, workbook %q", c[0], c[opRef], w[opRef])
		}
		if c[opRef] != "" {
			refs++
		}
	}
	if refs == 0 {
		t.Error("the fixture's statement gave no row an operator reference: the test sees nothing")
	}
}
