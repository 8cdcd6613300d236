package reports

import (
	"html/template"
	"io"
	"strconv"
	"unicode/utf8"
)

// The page is one self-contained file: inline CSS, inline SVG, no script,
// nothing fetched. html/template escapes every value from the ledger.
// Every table sits in a box that scrolls sideways, so a phone (390 px)
// reaches every column without the page itself overflowing; charts scale
// down with the page, their text sized to stay inside them.
var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>aopbatch report: batch {{.Batch}}</title>
<style>
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1100px;padding:0 1rem;color:#1d2330;overflow-wrap:anywhere}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.15rem;margin:1.75rem 0 .5rem;border-bottom:1px solid #d8dce3;padding-bottom:.25rem}
h3{font-size:1rem;margin:.75rem 0 .25rem}
.meta{color:#5b6475;margin:0 0 1rem}
.box{border-radius:6px;padding:.75rem 1rem;margin:.75rem 0}
.risk{background:#fff4e5;border:1px solid #f0b35c}
.ok{background:#eaf6ec;border:1px solid #8cc79a}
.bad{background:#fdecea;border:1px solid #e58b83}
.plain{background:#f6f7f9;border:1px solid #d8dce3}
.big{font-size:1.25rem;font-weight:600}
.note{color:#5b6475;font-size:13px}
.scroll{overflow-x:auto;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d8dce3;padding:.25rem .5rem;text-align:left;vertical-align:top;overflow-wrap:normal}
th{background:#f3f5f8}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
svg{max-width:100%;height:auto}
svg text{font-size:12px;fill:#1d2330}
.s-success{fill:#2e7d32}.s-failed{fill:#c62828}.s-refunded{fill:#8e24aa}.s-rejected{fill:#6d4c41}
.s-conflict{fill:#ad1457}.s-pending{fill:#f9a825}.s-duplicate{fill:#ef6c00}.s-unknown{fill:#e65100}
.s-held{fill:#5d6d7e}.s-queued{fill:#90a4ae}.s-inflight{fill:#fb8c00}
.b-total{fill:#b0c4de}.b-success{fill:#2e7d32}.b-lat{fill:#3f6fb5}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
.charts>*{min-width:0;max-width:100%}
</style>
</head>
<body>
<h1>Batch {{.Batch}}</h1>
<p class="meta">Source {{.Source}} · batch created {{.Created}} · report generated {{.Generated}}{{if .PIIMasked}} · personal data masked{{end}}</p>
<section class="box {{.Tone}}" id="verdict"><div class="big">{{.Verdict}}</div></section>

<h2>Money at risk</h2>
{{range .Risk}}<section class="box {{if .Rows}}risk{{else}}plain{{end}}" id="{{.Key}}">
<div class="big">{{.Title}}: {{.Rows}} rows, {{.Amount}}</div>
<div class="note">{{.Explain}}.{{if .Rows}} The oldest for {{.Oldest}}.{{end}}</div>
{{if .Rows}}<div class="scroll"><table><tr><th>age</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .Ageing}}<tr><td>{{.Label}}</td><td class="n">{{.Rows}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}</table></div>
<div class="scroll"><table><tr><th class="n">line</th><th>referenceid</th><th>state</th><th class="n">amount</th><th>unresolved for</th><th>since</th><th>message</th></tr>
{{range .List}}<tr><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td>{{.State}}</td><td class="n">{{.Amount}}</td><td>{{.Age}}</td><td>{{.Since}}</td><td>{{.Message}}</td></tr>
{{end}}</table></div>{{if .More}}<div>{{.More}} more in rows.csv.</div>{{end}}{{end}}
</section>
{{end}}
{{with .Recon}}<h2>Reconciliation</h2>
<section class="box {{if .Bad}}bad{{else}}ok{{end}}" id="reconciliation">
<div class="big">{{.Headline}}</div>
<div>Statement: {{.Lines}} lines. Net to recover: <strong>{{.NetToRecover}}</strong>.</div>
<div class="note">{{.NetExplain}}</div>
<div class="scroll"><table><tr><th>category</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .Categories}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}</table></div>
<div class="scroll"><table><tr><th>control total</th><th class="n">ledger</th><th class="n">statement</th><th class="n">difference</th></tr>
{{range .Control}}<tr><td>{{.Name}}</td><td class="n">{{.Ledger}}</td><td class="n">{{.Statement}}</td><td class="n">{{.Diff}}</td></tr>
{{end}}</table></div>
<div class="note">{{.DiffExplain}}</div>
<div class="scroll"><table><tr><th>the statement's own totals</th><th class="n">lines</th><th class="n">amount</th></tr>
{{range .StatementTotals}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}</table></div>
{{if .List}}<div class="scroll"><table><tr><th>category</th><th class="n">line</th><th>referenceid</th><th>ledger</th><th class="n">amount</th><th class="n">statement line</th><th>statement</th><th class="n">statement amount</th><th>note</th></tr>
{{range .List}}<tr><td>{{.Category}}</td><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td>{{.State}}</td><td class="n">{{.Amount}}</td><td class="n">{{.SLine}}</td><td>{{.SStatus}}</td><td class="n">{{.SAmount}}</td><td>{{.Note}}</td></tr>
{{end}}</table></div>{{end}}
{{range .More}}<div>{{.}}.</div>{{end}}
</section>{{end}}

{{if .Actions}}<h2>What to do</h2>
<ul>{{range .Actions}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>Rows by state</h2>
<div class="charts">
<div class="scroll"><table><tr><th>state</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .States}}<tr><td>{{.Name}}</td><td class="n">{{.N}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}<tr><th>total</th><th class="n">{{.TotalRows}}</th><th class="n">{{.TotalAmount}}</th></tr></table></div>
{{template "hbars" .StateChart}}
</div>

{{if .Operators}}<h2>Amounts by operator</h2>
<div class="charts">
<div class="scroll"><table><tr><th>operator</th><th class="n">rows</th><th class="n">amount</th><th class="n">success rows</th><th class="n">success amount</th><th class="n">failed rows</th><th class="n">failed amount</th></tr>
{{range .Operators}}<tr><td>{{.Name}}</td><td class="n">{{.Rows}}</td><td class="n">{{.Amount}}</td><td class="n">{{.SRows}}</td><td class="n">{{.SAmount}}</td><td class="n">{{.FRows}}</td><td class="n">{{.FAmount}}</td></tr>
{{end}}</table></div>
{{template "hbars" .OperatorChart}}
</div>{{end}}

{{if .Codes}}<h2>By response code</h2>
<div class="scroll"><table><tr><th class="n">code</th><th>outcome</th><th>meaning</th><th class="n">rows</th><th class="n">amount</th></tr>
{{range .Codes}}<tr><td class="n">{{.Code}}</td><td>{{.Outcome}}</td><td>{{.Message}}</td><td class="n">{{.Rows}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}</table></div>{{if .CodesMore}}<div>{{.CodesMore}} more groups in report.json.</div>{{end}}{{end}}

<h2>Run</h2>
{{if .Run}}<ul>{{range .Run}}<li>{{.}}</li>{{end}}</ul>
<div class="charts">{{with .Latency}}<svg width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" role="img" aria-label="latency of recharge requests">
<text x="0" y="14">recharge request latency (requests per latency band)</text>
{{range .Bars}}<rect class="b-lat" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"></rect><text x="{{.TextX}}" y="{{.TextY}}" text-anchor="middle">{{.Value}}</text><text x="{{.TextX}}" y="{{.LabelY}}" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>{{end}}</div>{{else}}<p>Nothing was sent.</p>{{end}}

{{if .Conflicts}}<h2>Conflicts</h2>
<div class="scroll"><table><tr><th class="n">line</th><th>referenceid</th><th class="n">amount</th><th>message</th></tr>
{{range .Conflicts}}<tr><td class="n">{{.Line}}</td><td>{{.Ref}}</td><td class="n">{{.Amount}}</td><td>{{.Message}}</td></tr>
{{end}}</table></div>{{end}}

<h2>Files</h2>
<ul>{{range .Files}}<li>{{.}}</li>{{end}}</ul>
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

// textW is a generous width for text at 12 px: no glyph of the labels
// used here is wider than 8 px in the fonts a browser picks for
// system-ui, so a box this wide always holds the text.
func textW(s string) int { return 8*utf8.RuneCountInString(s) + 4 }

const (
	hbarMaxW = 300
	hbarRow  = 22
	hbarTop  = 24
)

// hbars lays out a horizontal bar chart; back, when given, is a lighter bar
// drawn behind each value (the operator's total behind its success). The
// label column is as wide as the longest label and the chart as wide as
// the longest value after its bar, so no text is cut or overlaps a bar.
func hbars(title string, labels, values []string, classes []string, n []int64, back []int64) chart {
	var top int64 = 1
	labelW := 0
	for i := range n {
		top = max(top, n[i])
		if back != nil {
			top = max(top, back[i])
		}
		labelW = max(labelW, textW(labels[i]))
	}
	labelW += 8
	c := chart{Title: title, Height: hbarTop + hbarRow*len(n) + 4, Width: textW(title)}
	for i := range n {
		y := hbarTop + i*hbarRow
		w := int(n[i] * hbarMaxW / top)
		if n[i] > 0 && w == 0 {
			w = 1
		}
		b := bar{Label: labels[i], Value: values[i], Class: classes[i], X: labelW, Y: y, W: w, H: hbarRow - 6,
			TextY: y + 12, ValueX: labelW + w + 6}
		if back != nil {
			b.Back = true
			b.BackW = int(back[i] * hbarMaxW / top)
			b.ValueX = labelW + max(w, b.BackW) + 6
		}
		c.Width = max(c.Width, b.ValueX+textW(values[i]))
		c.Bars = append(c.Bars, b)
	}
	return c
}

const (
	vbarPlotH  = 140
	vbarTop    = 40
	vbarBottom = 24
)

// vbars lays out a vertical bar chart whose slots are as wide as the
// longest label, so the labels under the bars never run together.
func vbars(labels []string, n []int64) chart {
	var top int64 = 1
	slot := 64
	for i, v := range n {
		top = max(top, v)
		slot = max(slot, textW(labels[i])+12, textW(strconv.FormatInt(v, 10))+12)
	}
	c := chart{Width: slot * len(n), Height: vbarTop + vbarPlotH + vbarBottom}
	for i, v := range n {
		h := int(v * vbarPlotH / top)
		if v > 0 && h == 0 {
			h = 1
		}
		x := i * slot
		c.Bars = append(c.Bars, bar{
			Label: labels[i], Value: strconv.FormatInt(v, 10), X: x + 8, W: slot - 16,
			Y: vbarTop + vbarPlotH - h, H: h, TextX: x + slot/2, TextY: vbarTop + vbarPlotH - h - 4,
			LabelY: vbarTop + vbarPlotH + 16,
		})
	}
	c.Width = max(c.Width, textW("recharge request latency (requests per latency band)"))
	return c
}

// writeHTML renders the view as report.html.
func (v *view) writeHTML(w io.Writer) error { return pageTemplate.Execute(w, v) }
