package reports

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/xuri/excelize/v2"

	"github.com/aopbatch/aopbatch/ledger"
)

// Sheet names of report.xlsx.
const (
	SheetSummary        = "Summary"
	SheetAtRisk         = "Money at risk"
	SheetReconciliation = "Reconciliation"
	SheetRows           = "Rows"
	SheetRejects        = "Rejects"
)

// rupeeNumber is an amount as a workbook number. A spreadsheet's numbers
// are binary floating point by the file format; the conversion happens
// here, at the edge, and excelize writes the shortest decimal that reads
// back as the same number, which for any whole number of paise is exactly
// the two-decimal rupee amount: the file holds "1885.99", not a rounding.
func rupeeNumber(paise int64) float64 { return float64(paise) / 100 }

// xlsxWriter writes one workbook: identifiers always as text (a 13-digit
// referenceid must not become 1.79565E+12), amounts as numbers in a rupee
// format, every sheet's header row frozen and filtered.
type xlsxWriter struct {
	f     *excelize.File
	money int // style of amount cells
	head  int // style of header cells
}

func (s *Summary) writeXLSX(ctx context.Context, l ledger.Reader, v *view, w io.Writer) error {
	f := excelize.NewFile()
	defer f.Close()
	x := &xlsxWriter{f: f}
	numFmt := `"₹"#,##0.00;-"₹"#,##0.00`
	var err error
	if x.money, err = f.NewStyle(&excelize.Style{CustomNumFmt: &numFmt}); err != nil {
		return err
	}
	if x.head, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}}); err != nil {
		return err
	}
	if err := f.SetSheetName("Sheet1", SheetSummary); err != nil {
		return err
	}
	for _, name := range []string{SheetAtRisk, SheetReconciliation, SheetRows, SheetRejects} {
		if _, err := f.NewSheet(name); err != nil {
			return err
		}
	}
	steps := []func() error{
		func() error { return s.xlsxSummary(x, v) },
		func() error { return s.xlsxAtRisk(x) },
		func() error { return s.xlsxReconciliation(ctx, l, x) },
		func() error { return s.xlsxRows(ctx, l, x) },
		func() error { return s.xlsxRejects(ctx, l, x) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("workbook: %w", err)
		}
	}
	_, err = f.WriteTo(w)
	return err
}

// money is an amount cell.
func (x *xlsxWriter) amount(paise int64) excelize.Cell {
	return excelize.Cell{StyleID: x.money, Value: rupeeNumber(paise)}
}

// sheet streams one sheet: a header row, frozen and filtered, then rows.
type sheet struct {
	name  string
	sw    *excelize.StreamWriter
	row   int
	width int
}

func (x *xlsxWriter) sheet(name string, header []string, widths ...float64) (*sheet, error) {
	sw, err := x.f.NewStreamWriter(name)
	if err != nil {
		return nil, err
	}
	for i, wd := range widths {
		if err := sw.SetColWidth(i+1, i+1, wd); err != nil {
			return nil, err
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return nil, err
	}
	sh := &sheet{name: name, sw: sw, width: len(header)}
	cells := make([]any, len(header))
	for i, h := range header {
		cells[i] = excelize.Cell{StyleID: x.head, Value: h}
	}
	return sh, sh.add(cells...)
}

func (sh *sheet) add(cells ...any) error {
	sh.row++
	ref, err := excelize.CoordinatesToCellName(1, sh.row)
	if err != nil {
		return err
	}
	return sh.sw.SetRow(ref, cells)
}

// done adds the filter over the header and every row, and flushes.
func (sh *sheet) done() error {
	last, err := excelize.CoordinatesToCellName(sh.width, max(sh.row, 2))
	if err != nil {
		return err
	}
	if err := sh.sw.AddTable(&excelize.Table{Range: "A1:" + last, Name: "t" + strconv.Itoa(len(sh.name)) + tableName(sh.name),
		StyleName: "TableStyleLight1", ShowRowStripes: boolPtr(true)}); err != nil {
		return err
	}
	return sh.sw.Flush()
}

func boolPtr(b bool) *bool { return &b }

func tableName(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' {
			b = append(b, c)
		}
	}
	return string(b)
}

// text keeps a value as text whatever it looks like.
func text(v string) excelize.Cell { return excelize.Cell{Value: v} }

func (s *Summary) xlsxSummary(x *xlsxWriter, v *view) error {
	sh, err := x.sheet(SheetSummary, []string{"item", "rows", "amount", "note"}, 46, 10, 18, 100)
	if err != nil {
		return err
	}
	add := func(item string, rows any, amount any, note string) error {
		return sh.add(text(item), rows, amount, text(note))
	}
	steps := [][4]any{
		{"batch", nil, nil, s.Batch},
		{"source", nil, nil, s.Source},
		{"batch created", nil, nil, v.Created},
		{"report generated", nil, nil, v.Generated},
		{"verdict", nil, nil, v.Verdict},
	}
	for _, st := range ledger.States {
		if n := s.Counts.Get(st); n > 0 {
			steps = append(steps, [4]any{"state " + string(st), n, x.amount(s.AmountsPaise.Get(st)), ""})
		}
	}
	steps = append(steps, [4]any{"total", s.Counts.Total, x.amount(s.AmountsPaise.Total), "every data row of the file"})
	steps = append(steps,
		[4]any{"at risk: outcome unknown", s.AtRisk.OutcomeUnknown.Rows, x.amount(s.AtRisk.OutcomeUnknown.AmountPaise), "inflight, pending, duplicate, unknown: money may have moved"},
		[4]any{"at risk: not yet sent", s.AtRisk.NotYetSent.Rows, x.amount(s.AtRisk.NotYetSent.AmountPaise), "queued, held: nothing has moved"})
	if r := s.Reconciliation; r.Performed {
		for _, c := range reconRows(r) {
			steps = append(steps, [4]any{"reconciliation: " + c.name, c.n, x.amount(r.AmountsPaise[c.cat]), ""})
		}
		ct := r.ControlTotals
		steps = append(steps,
			[4]any{"control total: ledger success", ct.LedgerSuccessRows, x.amount(ct.LedgerSuccessPaise), ""},
			[4]any{"control total: statement success", ct.StatementSuccessRows, x.amount(ct.StatementSuccessPaise), "repeated lines included"},
			[4]any{"control total: difference", ct.StatementSuccessRows - ct.LedgerSuccessRows, x.amount(ct.DifferencePaise), "statement minus ledger"},
			[4]any{"net to recover", nil, x.amount(r.NetToRecoverPaise), "extra charges plus over-charges less under-charges"},
			[4]any{"statement: lines", r.StatementTotals.Lines, x.amount(r.StatementTotals.AmountPaise()), ""},
			[4]any{"statement: success", r.StatementTotals.Success.Rows, x.amount(r.StatementTotals.Success.AmountPaise), ""},
			[4]any{"statement: refunded", r.StatementTotals.Refunded.Rows, x.amount(r.StatementTotals.Refunded.AmountPaise), ""},
			[4]any{"statement: failed", r.StatementTotals.Failed.Rows, x.amount(r.StatementTotals.Failed.AmountPaise), ""},
			[4]any{"statement: pending", r.StatementTotals.Pending.Rows, x.amount(r.StatementTotals.Pending.AmountPaise), ""})
	}
	for _, a := range s.Attention.Actions {
		steps = append(steps, [4]any{"to do", nil, nil, a})
	}
	for _, st := range steps {
		item, _ := st[0].(string)
		note, _ := st[3].(string)
		if err := add(item, st[1], st[2], note); err != nil {
			return err
		}
	}
	return sh.done()
}

func (s *Summary) xlsxAtRisk(x *xlsxWriter) error {
	sh, err := x.sheet(SheetAtRisk, []string{"figure", "line", "referenceid", "operator", "canumber", "state", "amount", "since", "unresolved seconds", "message"},
		18, 8, 24, 10, 16, 10, 14, 22, 12, 50)
	if err != nil {
		return err
	}
	for _, g := range []struct {
		name string
		g    RiskGroup
	}{{"outcome unknown", s.AtRisk.OutcomeUnknown}, {"not yet sent", s.AtRisk.NotYetSent}} {
		for _, r := range g.g.Listed {
			if err := sh.add(text(g.name), r.Line, text(r.ReferenceID), text(operatorName(r.Operator)), text(r.CANumber), text(string(r.State)),
				x.amount(r.AmountPaise), text(s.when(r.Since)), r.UnresolvedSeconds, text(r.Message)); err != nil {
				return err
			}
		}
	}
	return sh.done()
}

func (s *Summary) xlsxReconciliation(ctx context.Context, l ledger.Reader, x *xlsxWriter) error {
	sh, err := x.sheet(SheetReconciliation, ReconciliationHeader, 22, 8, 24, 10, 14, 16, 10, 12, 14, 16, 60)
	if err != nil {
		return err
	}
	if s.recon != nil {
		err = s.walk(ctx, l, s.recon, func(r *ledger.Row, d *Discrepancy) error {
			var line, amount, sline, samount any
			if d.Line > 0 {
				line, amount = d.Line, x.amount(d.AmountPaise)
			}
			if d.StatementLine > 0 {
				sline, samount = d.StatementLine, x.amount(d.StatementAmountPaise)
			}
			return sh.add(text(string(d.Category)), line, text(d.ReferenceID), text(string(d.State)), amount, text(d.ProviderTxnID),
				sline, text(d.StatementStatus), samount, text(d.StatementTxnID), text(d.Note))
		})
		if err != nil {
			return err
		}
	}
	return sh.done()
}

func (s *Summary) xlsxRows(ctx context.Context, l ledger.Reader, x *xlsxWriter) error {
	sh, err := x.sheet(SheetRows, RowsHeader, 8, 24, 10, 16, 14, 10, 8, 40, 8, 16, 14, 22, 22)
	if err != nil {
		return err
	}
	add := func(r *ledger.Row, opRef string) error {
		var op, amount, code any
		if r.Operator != 0 {
			op = r.Operator
		}
		if amountCell(r.State, r.AmountPaise) != "" {
			amount = x.amount(r.AmountPaise)
		}
		if r.ResponseCode >= 0 {
			code = r.ResponseCode
		}
		first, settled := s.rowTimes(r)
		return sh.add(r.Line, text(r.ReferenceID), op, text(s.mask(r.CANumber)), amount, text(string(r.State)), code,
			text(s.rowMessage(r)), r.Attempts, text(r.ProviderTxnID), text(opRef), text(first), text(settled))
	}
	// As rows.csv: the operator reference comes from the statement.
	if s.recon == nil {
		err = l.EachRow(ctx, s.seq, func(r *ledger.Row) error { return add(r, "") })
	} else {
		err = s.walk(ctx, l, s.recon, func(r *ledger.Row, d *Discrepancy) error {
			if r == nil {
				return nil
			}
			return add(r, d.StatementOperatorRef)
		})
	}
	if err != nil {
		return err
	}
	return sh.done()
}

func (s *Summary) xlsxRejects(ctx context.Context, l ledger.Reader, x *xlsxWriter) error {
	width := len(s.header)
	sh, err := x.sheet(SheetRejects, append(append([]string(nil), s.header...), RejectsTrailer...))
	if err != nil {
		return err
	}
	pii := s.piiMasked()
	err = eachInState(ctx, l, s.seq, ledger.StateRejected, func(r *ledger.Row) error {
		cells := make([]any, 0, width+len(RejectsTrailer))
		ragged := raggedRow(r, width) // its cells in the reason, as in rejects.csv
		for i := 0; i < width; i++ {
			v := ""
			if i < len(r.Raw) && !ragged {
				v = r.Raw[i]
				if pii[i] {
					v = maskTail(v)
				}
			}
			cells = append(cells, text(v))
		}
		reason, fixable := s.rejectReason(r)
		cells = append(cells, r.Line, text(r.ErrorCode), text(reason), text(fixable))
		return sh.add(cells...)
	})
	if err != nil {
		return err
	}
	return sh.done()
}
