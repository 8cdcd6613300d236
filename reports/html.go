package reports

import (
	"html/template"
	"io"
	"sort"
	"strconv"

	"github.com/aopbatch/aopbatch/ledger"
)

// The page is one self-contained file: inline CSS, inline SVG, no script,
// nothing fetched. html/template escapes every value from the ledger.
var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>aopbatch report: batch {{.S.Batch}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1100px;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:1.75rem 0 .5rem;border-bottom:1px solid #d8dce3;padding-bottom:.25rem}
.meta{color:#5b6475;margin:0 0 1rem}
.box{border-radius:6px;padding:.75rem 1rem;margin:.75rem 0}
.risk{background:#fff4e5;border:1px solid #f0b35c}
.ok{background:#eaf6ec;border:1px solid #8cc79a}
.bad{background:#fdecea;border:1px solid #e58b83}
.big{font-size:1.25rem;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px}
th,td{border:1px solid #d8dce3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:12px;fill:#1d2330}
.s-success{fill:#2e7d32}.s-failed{fill:#c62828}.s-refunded{fill:#8e24aa}.s-rejected{fill:#6d4c41}
.s-conflict{fill:#ad1457}.s-pending{fill:#f9a825}.s-duplicate{fill:#ef6c00}.s-unknown{fill:#e65100}
.s-held{fill:#5d6d7e}.s-queued{fill:#90a4ae}.s-inflight{fill:#fb8c00}
.b-total{fill:#b0c4de}.b-success{fill:#2e7d32}.b-lat{fill:#3f6fb5}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
</style>
</head>
<body>
<h1>Batch {{.S.Batch}}</h1>
<p class="meta">Source {{.Source}} · batch created {{.Created}} · report generated {{.Generated}}{{if .S.PIIMasked}} · personal data masked{{end}}</p>

{{if .S.AtRisk.Rows}}<section class="box risk" id="at-risk">
<div class="big">Money at risk: {{.S.AtRisk.Rows}} rows, {{.RiskAmount}} rupees not settled</div>
<div>The oldest has been unresolved for {{.RiskOldest}}.</div>
<table><tr><th class="n">line</th><th>referenceid</th><th>state</th><th class="n">amount</th><th>unresolved for</th><th>since</th><th>message</th></tr>
{{range .Risk}}<tr><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td>{{.State}}</td><td class="n">{{.Amount}}</td><td>{{.Age}}</td><td>{{.Since}}</td><td>{{.Message}}</td></tr>
{{end}}</table>{{if .RiskMore}}<div>{{.RiskMore}} more in rows.csv.</div>{{end}}
</section>{{else}}<section class="box ok" id="at-risk"><div class="big">Nothing at risk: every row is final.</div></section>{{end}}

{{with .Recon}}<section class="box {{if .Bad}}bad{{else}}ok{{end}}" id="reconciliation">
<div class="big">{{if .Bad}}The ledger and the statement disagree{{else}}The ledger and the statement agree{{end}}</div>
<div>Statement: {{.Lines}} lines. Every row is in reconciliation.csv.</div>
<table><tr><th>category</th><th class="n">rows</th></tr>
{{range .Rows}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td></tr>
{{end}}</table>
<table><tr><th>control total</th><th class="n">ledger</th><th class="n">statement</th><th class="n">difference</th></tr>
<tr><td>success rows</td><td class="n">{{.LedgerRows}}</td><td class="n">{{.StatementRows}}</td><td class="n">{{.DiffRows}}</td></tr>
<tr><td>success amount</td><td class="n">{{.LedgerAmount}}</td><td class="n">{{.StatementAmount}}</td><td class="n">{{.DiffAmount}}</td></tr>
</table>
{{if .List}}<table><tr><th>category</th><th class="n">line</th><th>referenceid</th><th>ledger</th><th class="n">amount</th><th class="n">statement line</th><th>statement</th><th class="n">statement amount</th><th>note</th></tr>
{{range .List}}<tr><td>{{.Category}}</td><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td>{{.State}}</td><td class="n">{{.Amount}}</td><td class="n">{{.SLine}}</td><td>{{.SStatus}}</td><td class="n">{{.SAmount}}</td><td>{{.Note}}</td></tr>
{{end}}</table>{{end}}
</section>{{end}}

{{if .S.Attention.Actions}}<h2>What to do</h2>
<ul>{{range .S.Attention.Actions}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>Rows by state</h2>
<div class="charts">
<table><tr><th>state</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .States}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}<tr><th>total</th><th class="n">{{.S.Counts.Total}}</th><th class="n">{{.TotalAmount}}</th></tr></table>
{{template "hbars" .StateChart}}
</div>

{{if .Operators}}<h2>Amounts by operator</h2>
<div class="charts">
<table><tr><th>operator</th><th class="n">rows</th><th class="n">amount</th><th class="n">success rows</th><th class="n">success amount</th><th class="n">failed rows</th><th class="n">failed amount</th></tr>
{{range .Operators}}<tr><td>{{.Name}}</td><td class="n">{{.Rows}}</td><td class="n">{{.Amount}}</td><td class="n">{{.SRows}}</td><td class="n">{{.SAmount}}</td><td class="n">{{.FRows}}</td><td class="n">{{.FAmount}}</td></tr>
{{end}}</table>
{{template "hbars" .OperatorChart}}
</div>{{end}}

{{if .Codes}}<h2>By response code</h2>
<table><tr><th class="n">code</th><th>message</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .Codes}}<tr><td class="n">{{.Code}}</td><td>{{.Message}}</td><td class="n">{{.Rows}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}</table>{{if .CodesMore}}<div>{{.CodesMore}} more groups in report.json.</div>{{end}}{{end}}

<h2>Run</h2>
{{if .Run}}<ul>{{range .Run}}<li>{{.}}</li>{{end}}</ul>
<div class="charts">{{with .Latency}}<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="latency of recharge requests">
<text x="0" y="14">recharge request latency</text>
{{range .Bars}}<rect class="b-lat" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect><text x="{{.TextX}}" y="{{.TextY}}" text-anchor="middle">{{.Value}}</text><text x="{{.TextX}}" y="{{.LabelY}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>{{end}}</div>{{else}}<p>Nothing was sent.</p>{{end}}

{{if .S.Attention.Conflicts}}<h2>Conflicts</h2>
<table><tr><th class="n">line</th><th>referenceid</th><th class="n">amount</th><th>message</th></tr>
{{range .Conflicts}}<tr><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td class="n">{{.Amount}}</td><td>{{.Message}}</td></tr>
{{end}}</table>{{end}}
</body>
</html>
{{define "hbars"}}<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="{{.Title}}">
<text x="0" y="14">{{.Title}}</text>
{{range .Bars}}<text x="0" y="{{.TextY}}">{{.Label}}</text>{{if .Back}}<rect class="b-total" x="{{.X}}" y="{{.Y}}" width="{{.BackW}}" height="{{.H}}"></rect>{{end}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect><text x="{{.ValueX}}" y="{{.TextY}}">{{.Value}}</text>
{{end}}</svg>{{end}}`))

type bar struct {
	Label, Value, Class string
	X, Y, W, H          int
	Back                bool
	BackW               int
	TextX, TextY        int
	ValueX, LabelY      int
}

type chart struct {
	Title         string
	Width, Height int
	Bars          []bar
}

const (
	hbarLabelW = 110
	hbarMaxW   = 300
	hbarRow    = 22
	hbarTop    = 24
)

// hbars lays out a horizontal bar chart; back, when given, is a lighter bar
// drawn behind each value (the operator's total behind its success).
func hbars(title string, labels, values []string, classes []string, n []int64, back []int64) chart {
	var top int64 = 1
	for i := range n {
		top = max(top, n[i])
		if back != nil {
			top = max(top, back[i])
		}
	}
	c := chart{Title: title, Width: hbarLabelW + hbarMaxW + 190, Height: hbarTop + hbarRow*len(n) + 4}
	for i := range n {
		y := hbarTop + i*hbarRow
		w := int(n[i] * hbarMaxW / top)
		if n[i] > 0 && w == 0 {
			w = 1
		}
		b := bar{Label: labels[i], Value: values[i], Class: classes[i], X: hbarLabelW, Y: y, W: w, H: hbarRow - 6,
			TextY: y + 12, ValueX: hbarLabelW + w + 6}
		if back != nil {
			b.Back = true
			b.BackW = int(back[i] * hbarMaxW / top)
			b.ValueX = hbarLabelW + max(w, b.BackW) + 6
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

const (
	vbarSlot   = 84
	vbarPlotH  = 140
	vbarTop    = 40
	vbarBottom = 24
)

func vbars(labels []string, n []int64) chart {
	var top int64 = 1
	for _, v := range n {
		top = max(top, v)
	}
	c := chart{Width: vbarSlot * len(n), Height: vbarTop + vbarPlotH + vbarBottom}
	for i, v := range n {
		h := int(v * vbarPlotH / top)
		if v > 0 && h == 0 {
			h = 1
		}
		x := i * vbarSlot
		c.Bars = append(c.Bars, bar{
			Label: labels[i], Value: strconv.FormatInt(v, 10), X: x + 8, W: vbarSlot - 16,
			Y: vbarTop + vbarPlotH - h, H: h, TextX: x + vbarSlot/2, TextY: vbarTop + vbarPlotH - h - 4,
			LabelY: vbarTop + vbarPlotH + 16,
		})
	}
	return c
}

type htmlRisk struct {
	Line                                    int
	Ref, State, Amount, Age, Since, Message string
}
type htmlRecon struct {
	Bad   bool
	Lines int64
	Rows  []struct {
		Name string
		N    int64
	}
	LedgerRows, StatementRows                 int64
	DiffRows                                  string
	LedgerAmount, StatementAmount, DiffAmount string
	List                                      []htmlDisc
}
type htmlDisc struct{ Category, Line, Ref, State, Amount, SLine, SStatus, SAmount, Note string }
type htmlState struct {
	Name   string
	N      int64
	Amount string
}
type htmlOp struct {
	Name                     string
	Rows, SRows, FRows       int64
	Amount, SAmount, FAmount string
}
type htmlCode struct {
	Code, Message, Amount string
	Rows                  int64
}
type htmlRef struct {
	Line                 int
	Ref, Amount, Message string
}

type htmlView struct {
	S                          *Summary
	Source, Created, Generated string
	RiskAmount, RiskOldest     string
	Risk                       []htmlRisk
	RiskMore                   int64
	Recon                      *htmlRecon
	States                     []htmlState
	TotalAmount                string
	StateChart, OperatorChart  chart
	Operators                  []htmlOp
	Codes                      []htmlCode
	CodesMore                  int
	Run                        []string
	Latency                    *chart
	Conflicts                  []htmlRef
}

const maxChartOperators = 12

func (s *Summary) writeHTML(w io.Writer) error {
	v := htmlView{
		S: s, Source: orDash(s.Source), Created: s.when(s.BatchCreated), Generated: s.when(s.GeneratedAt),
		RiskAmount: rupees(s.AtRisk.AmountPaise), RiskOldest: ageText(s.AtRisk.OldestSeconds),
		TotalAmount: rupees(s.AmountsPaise.Total),
	}
	for i, r := range s.AtRisk.Listed {
		if i == mdListedLimit {
			break
		}
		v.Risk = append(v.Risk, htmlRisk{r.Line, r.ReferenceID, string(r.State), rupees(r.AmountPaise), ageText(r.UnresolvedSeconds), s.when(r.Since), r.Message})
	}
	v.RiskMore = s.AtRisk.Rows - int64(len(v.Risk))
	if r := s.Reconciliation; r.Performed {
		ct := r.ControlTotals
		hr := &htmlRecon{
			Bad: s.Mismatched(), Lines: r.StatementRows,
			LedgerRows: ct.LedgerSuccessRows, StatementRows: ct.StatementSuccessRows,
			DiffRows:     strconv.FormatInt(ct.StatementSuccessRows-ct.LedgerSuccessRows, 10),
			LedgerAmount: rupees(ct.LedgerSuccessPaise), StatementAmount: rupees(ct.StatementSuccessPaise),
			DiffAmount: signedRupees(ct.DifferencePaise),
		}
		if d := ct.StatementSuccessRows - ct.LedgerSuccessRows; d > 0 {
			hr.DiffRows = "+" + hr.DiffRows
		}
		for _, c := range reconRows(r) {
			hr.Rows = append(hr.Rows, struct {
				Name string
				N    int64
			}{c.name, c.n})
		}
		for _, d := range r.Discrepancies {
			hd := htmlDisc{Category: string(d.Category), Ref: d.ReferenceID, State: string(d.State), SStatus: d.StatementStatus, Note: d.Note}
			if d.Line > 0 {
				hd.Line, hd.Amount = strconv.Itoa(d.Line), rupees(d.AmountPaise)
			}
			if d.StatementLine > 0 {
				hd.SLine, hd.SAmount = strconv.Itoa(d.StatementLine), rupees(d.StatementAmountPaise)
			}
			hr.List = append(hr.List, hd)
		}
		v.Recon = hr
	}
	var labels, values, classes []string
	var counts []int64
	for _, st := range ledger.States {
		n := s.Counts.Get(st)
		if n == 0 {
			continue
		}
		v.States = append(v.States, htmlState{string(st), n, rupees(s.AmountsPaise.Get(st))})
		labels = append(labels, string(st))
		values = append(values, strconv.FormatInt(n, 10))
		classes = append(classes, "s-"+string(st))
		counts = append(counts, n)
	}
	v.StateChart = hbars("rows by state", labels, values, classes, counts, nil)

	for _, op := range s.ByOperator {
		sc, fl := op.States[string(ledger.StateSuccess)], op.States[string(ledger.StateFailed)]
		v.Operators = append(v.Operators, htmlOp{operatorName(op.Operator), op.Total.Rows, sc.Rows, fl.Rows,
			rupees(op.Total.AmountPaise), rupees(sc.AmountPaise), rupees(fl.AmountPaise)})
	}
	top := append([]OperatorTally(nil), s.ByOperator...)
	sort.SliceStable(top, func(i, j int) bool { return top[i].Total.AmountPaise > top[j].Total.AmountPaise })
	if len(top) > maxChartOperators {
		top = top[:maxChartOperators]
	}
	labels, values, classes, counts = nil, nil, nil, nil
	var totals []int64
	for _, op := range top {
		sc := op.States[string(ledger.StateSuccess)]
		labels = append(labels, "operator "+operatorName(op.Operator))
		values = append(values, rupees(op.Total.AmountPaise)+" (success "+rupees(sc.AmountPaise)+")")
		classes = append(classes, "b-success")
		counts = append(counts, sc.AmountPaise)
		totals = append(totals, op.Total.AmountPaise)
	}
	v.OperatorChart = hbars("amount by operator (rupees; dark: success)", labels, values, classes, counts, totals)

	for i, c := range s.ByCode {
		if i == mdListedLimit {
			v.CodesMore = len(s.ByCode) - i
			break
		}
		v.Codes = append(v.Codes, htmlCode{codeName(c.Code), orDash(c.Message), rupees(c.AmountPaise), c.Rows})
	}
	if s.Duration.FirstAttempt != nil {
		v.Run = []string{
			"first request " + s.when(*s.Duration.FirstAttempt) + ", last " + s.when(*s.Duration.LastAttempt),
			strconv.FormatInt(s.Throughput.RowsSent, 10) + " rows sent, " + strconv.FormatInt(s.Throughput.RechargeAttempts, 10) +
				" recharge requests (" + strconv.FormatFloat(s.Throughput.PerSecond, 'f', 2, 64) + "/s), " +
				strconv.FormatInt(s.Throughput.StatusEnquiries, 10) + " status enquiries",
			"latency p50 " + strconv.FormatInt(s.Latency.P50MS, 10) + " ms, p95 " + strconv.FormatInt(s.Latency.P95MS, 10) +
				" ms, p99 " + strconv.FormatInt(s.Latency.P99MS, 10) + " ms, max " + strconv.FormatInt(s.Latency.MaxMS, 10) + " ms",
		}
		var ls []string
		var ns []int64
		for _, b := range s.Latency.Buckets {
			ls = append(ls, b.Label)
			ns = append(ns, b.Count)
		}
		c := vbars(ls, ns)
		v.Latency = &c
	}
	for _, c := range s.Attention.Conflicts {
		v.Conflicts = append(v.Conflicts, htmlRef{c.Line, c.ReferenceID, rupees(c.AmountPaise), c.Message})
	}
	return pageTemplate.Execute(w, v)
}
