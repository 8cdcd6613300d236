package reports

import (
	"fmt"
	"io"
	"strings"
)

var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`,
	`<`, `\<`, `>`, `\>`, `|`, `\|`, `#`, `\#`)

// md makes untrusted text inert in markdown: no emphasis, links, raw HTML
// or table breaks.
func md(s string) string { return mdEscaper.Replace(oneLine(s)) }

// writeMarkdown renders the view as summary.md.
func (v *view) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Batch %s\n\n", md(v.Batch))
	p("Source %s · batch created %s · report generated %s", md(v.Source), v.Created, v.Generated)
	if v.PIIMasked {
		b.WriteString(" · personal data masked")
	}
	p("\n\n**%s**\n\n", md(v.Verdict))

	b.WriteString("## Money at risk\n\n")
	for _, r := range v.Risk {
		p("### %s: %d rows, %s\n\n%s.", r.Title, r.Rows, r.Amount, md(r.Explain))
		if r.Rows == 0 {
			b.WriteString(" None.\n\n")
			continue
		}
		p(" The oldest for %s.\n\n", r.Oldest)
		b.WriteString("| age | rows | amount |\n|---|---:|---:|\n")
		for _, a := range r.Ageing {
			p("| %s | %d | %s |\n", a.Label, a.Rows, a.Amount)
		}
		b.WriteString("\n| line | referenceid | state | amount | unresolved for | since | message |\n|---:|---|---|---:|---|---|---|\n")
		for _, x := range r.List {
			p("| %d | %s | %s | %s | %s | %s | %s |\n", x.Line, md(x.Ref), x.State, x.Amount, x.Age, x.Since, md(x.Message))
		}
		if r.More > 0 {
			p("\n%d more in rows.csv.\n", r.More)
		}
		b.WriteString("\n")
	}

	if rc := v.Recon; rc != nil {
		b.WriteString("## Reconciliation\n\n")
		if rc.Bad {
			p("**%s**\n\n", rc.Headline)
		} else {
			p("%s\n\n", rc.Headline)
		}
		p("Statement: %d lines. Net to recover: **%s**.\n\n%s\n\n", rc.Lines, rc.NetToRecover, md(rc.NetExplain))
		b.WriteString("| category | rows | amount |\n|---|---:|---:|\n")
		for _, c := range rc.Categories {
			p("| %s | %d | %s |\n", c.Name, c.N, c.Amount)
		}
		b.WriteString("\n| control total | ledger | statement | difference |\n|---|---:|---:|---:|\n")
		for _, c := range rc.Control {
			p("| %s | %s | %s | %s |\n", c.Name, c.Ledger, c.Statement, c.Diff)
		}
		p("\n%s\n\n", md(rc.DiffExplain))
		b.WriteString("| the statement's own totals | lines | amount |\n|---|---:|---:|\n")
		for _, c := range rc.StatementTotals {
			p("| %s | %d | %s |\n", c.Name, c.N, c.Amount)
		}
		b.WriteString("\n")
		if len(rc.List) > 0 {
			b.WriteString("| category | line | referenceid | ledger | amount | statement line | statement | statement amount | note |\n|---|---:|---|---|---:|---:|---|---:|---|\n")
			for _, d := range rc.List {
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", d.Category, d.Line, md(d.Ref), d.State, d.Amount, d.SLine, d.SStatus, d.SAmount, md(d.Note))
			}
			b.WriteString("\n")
		}
		for _, m := range rc.More {
			p("%s.\n", m)
		}
		if len(rc.More) > 0 {
			b.WriteString("\n")
		}
	}

	if len(v.Actions) > 0 {
		b.WriteString("## What to do\n\n")
		for _, a := range v.Actions {
			p("- %s\n", md(a))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Rows by state\n\n| state | rows | amount |\n|---|---:|---:|\n")
	for _, st := range v.States {
		p("| %s | %d | %s |\n", st.Name, st.N, st.Amount)
	}
	p("| **total** | **%d** | **%s** |\n\n", v.TotalRows, v.TotalAmount)

	if len(v.Operators) > 0 {
		b.WriteString("## By operator\n\n| operator | rows | amount | success rows | success amount | failed rows | failed amount |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, op := range v.Operators {
			p("| %s | %d | %s | %d | %s | %d | %s |\n", op.Name, op.Rows, op.Amount, op.SRows, op.SAmount, op.FRows, op.FAmount)
		}
		b.WriteString("\n")
	}

	if len(v.Codes) > 0 {
		b.WriteString("## By response code\n\n| code | outcome | meaning | rows | amount |\n|---:|---|---|---:|---:|\n")
		for _, c := range v.Codes {
			p("| %s | %s | %s | %d | %s |\n", c.Code, c.Outcome, md(c.Message), c.Rows, c.Amount)
		}
		if v.CodesMore > 0 {
			p("\n%d more groups in report.json.\n", v.CodesMore)
		}
		b.WriteString("\n")
	}

	b.WriteString("## Run\n\n")
	if len(v.Run) == 0 {
		b.WriteString("Nothing was sent.\n\n")
	} else {
		for _, r := range v.Run {
			p("- %s\n", r)
		}
		b.WriteString("\n")
	}

	if len(v.Conflicts) > 0 {
		b.WriteString("## Conflicts\n\n| line | referenceid | amount | message |\n|---:|---|---:|---|\n")
		for _, c := range v.Conflicts {
			p("| %d | %s | %s | %s |\n", c.Line, md(c.Ref), c.Amount, md(c.Message))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Files\n\n")
	for _, f := range v.Files {
		p("- %s\n", f)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
