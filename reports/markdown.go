package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

const (
	timeText      = "2006-01-02 15:04:05 MST"
	mdListedLimit = 20
)

var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`,
	`<`, `\<`, `>`, `\>`, `|`, `\|`, `#`, `\#`)

// md makes untrusted text inert in markdown: no emphasis, links, raw HTML
// or table breaks.
func md(s string) string { return mdEscaper.Replace(oneLine(s)) }

func (s *Summary) when(t time.Time) string { return t.In(s.loc).Format(timeText) }

func (s *Summary) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Batch %s\n\n", md(s.Batch))
	fmt.Fprintf(&b, "Source %s · batch created %s · report generated %s", md(orDash(s.Source)), s.when(s.BatchCreated), s.when(s.GeneratedAt))
	if s.PIIMasked {
		b.WriteString(" · personal data masked")
	}
	b.WriteString("\n\n")

	b.WriteString("## Money at risk\n\n")
	if s.AtRisk.Rows == 0 {
		b.WriteString("Nothing at risk: every row is final.\n\n")
	} else {
		fmt.Fprintf(&b, "**%d rows, %s rupees not settled**; the oldest unresolved for %s.\n\n",
			s.AtRisk.Rows, rupees(s.AtRisk.AmountPaise), ageText(s.AtRisk.OldestSeconds))
		b.WriteString("| line | referenceid | state | amount | unresolved for | since | message |\n|---:|---|---|---:|---|---|---|\n")
		for i, r := range s.AtRisk.Listed {
			if i == mdListedLimit {
				break
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s |\n", r.Line, md(r.ReferenceID), r.State, rupees(r.AmountPaise),
				ageText(r.UnresolvedSeconds), s.when(r.Since), md(r.Message))
		}
		if more := s.AtRisk.Rows - int64(min(len(s.AtRisk.Listed), mdListedLimit)); more > 0 {
			fmt.Fprintf(&b, "\n%d more in rows.csv (states pending, duplicate, unknown, inflight, held, queued).\n", more)
		}
		b.WriteString("\n")
	}

	if r := s.Reconciliation; r.Performed {
		b.WriteString("## Reconciliation\n\n")
		if s.Mismatched() {
			b.WriteString("**The ledger and the statement disagree.** Every row is in reconciliation.csv.\n\n")
		} else {
			b.WriteString("The ledger and the statement agree.\n\n")
		}
		fmt.Fprintf(&b, "Statement: %d lines.\n\n", r.StatementRows)
		b.WriteString("| category | rows |\n|---|---:|\n")
		for _, c := range reconRows(r) {
			fmt.Fprintf(&b, "| %s | %d |\n", c.name, c.n)
		}
		ct := r.ControlTotals
		b.WriteString("\n| control total | ledger | statement | difference |\n|---|---:|---:|---:|\n")
		fmt.Fprintf(&b, "| success rows | %d | %d | %+d |\n", ct.LedgerSuccessRows, ct.StatementSuccessRows, ct.StatementSuccessRows-ct.LedgerSuccessRows)
		fmt.Fprintf(&b, "| success amount | %s | %s | %s |\n\n", rupees(ct.LedgerSuccessPaise), rupees(ct.StatementSuccessPaise), signedRupees(ct.DifferencePaise))
		if len(r.Discrepancies) > 0 {
			b.WriteString("| category | line | referenceid | ledger | amount | statement line | statement | statement amount | note |\n|---|---:|---|---|---:|---:|---|---:|---|\n")
			for _, d := range r.Discrepancies {
				line, amount, sline, samount := "", "", "", ""
				if d.Line > 0 {
					line, amount = strconv.Itoa(d.Line), rupees(d.AmountPaise)
				}
				if d.StatementLine > 0 {
					sline, samount = strconv.Itoa(d.StatementLine), rupees(d.StatementAmountPaise)
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", d.Category, line, md(d.ReferenceID), d.State,
					amount, sline, d.StatementStatus, samount, md(d.Note))
			}
			b.WriteString("\n")
		}
	}

	if len(s.Attention.Actions) > 0 {
		b.WriteString("## What to do\n\n")
		for _, a := range s.Attention.Actions {
			fmt.Fprintf(&b, "- %s\n", md(a))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Rows by state\n\n| state | rows | amount |\n|---|---:|---:|\n")
	for _, st := range ledger.States {
		if n := s.Counts.Get(st); n > 0 {
			fmt.Fprintf(&b, "| %s | %d | %s |\n", st, n, rupees(s.AmountsPaise.Get(st)))
		}
	}
	fmt.Fprintf(&b, "| **total** | **%d** | **%s** |\n\n", s.Counts.Total, rupees(s.AmountsPaise.Total))

	if len(s.ByOperator) > 0 {
		b.WriteString("## By operator\n\n| operator | rows | amount | success rows | success amount | failed rows | failed amount |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, op := range s.ByOperator {
			sc, fl := op.States[string(ledger.StateSuccess)], op.States[string(ledger.StateFailed)]
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %d | %s |\n", operatorName(op.Operator), op.Total.Rows, rupees(op.Total.AmountPaise),
				sc.Rows, rupees(sc.AmountPaise), fl.Rows, rupees(fl.AmountPaise))
		}
		b.WriteString("\n")
	}

	if len(s.ByCode) > 0 {
		b.WriteString("## By response code\n\n| code | message | rows | amount |\n|---:|---|---:|---:|\n")
		for i, c := range s.ByCode {
			if i == mdListedLimit {
				fmt.Fprintf(&b, "\n%d more groups in report.json.\n", len(s.ByCode)-i)
				break
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", codeName(c.Code), md(orDash(c.Message)), c.Rows, rupees(c.AmountPaise))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Run\n\n")
	if s.Duration.FirstAttempt == nil {
		b.WriteString("Nothing was sent.\n\n")
	} else {
		fmt.Fprintf(&b, "- first request %s, last %s (%s)\n", s.when(*s.Duration.FirstAttempt), s.when(*s.Duration.LastAttempt),
			(time.Duration(s.Duration.Seconds*1000) * time.Millisecond).String())
		fmt.Fprintf(&b, "- %d rows sent, %d recharge requests (%.2f/s), %d status enquiries\n",
			s.Throughput.RowsSent, s.Throughput.RechargeAttempts, s.Throughput.PerSecond, s.Throughput.StatusEnquiries)
		fmt.Fprintf(&b, "- latency p50 %d ms, p95 %d ms, p99 %d ms, max %d ms\n\n", s.Latency.P50MS, s.Latency.P95MS, s.Latency.P99MS, s.Latency.MaxMS)
	}

	if len(s.Attention.Conflicts) > 0 {
		b.WriteString("## Conflicts\n\n| line | referenceid | amount | message |\n|---:|---|---:|---|\n")
		for _, c := range s.Attention.Conflicts {
			fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", c.Line, md(c.ReferenceID), rupees(c.AmountPaise), md(c.Message))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Files\n\n")
	b.WriteString("- rows.csv: every row of the file with its state, amounts in rupees\n")
	b.WriteString("- rejects.csv: the rejected rows as they came, plus line, error_code, reason and fixable (\"review\": a repeated referenceid, possibly the same payment twice)\n")
	if s.Reconciliation.Performed {
		b.WriteString("- reconciliation.csv: every row and statement line with its category\n")
	}
	b.WriteString("- report.json: these figures for programs; report.html: the same with charts\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type namedCount struct {
	name string
	n    int64
}

func reconRows(r Reconciliation) []namedCount {
	return []namedCount{
		{"matched", r.Matched}, {"amount mismatch", r.AmountMismatch}, {"status mismatch", r.StatusMismatch},
		{"missing in statement", r.MissingInStatement}, {"missing in ledger", r.MissingInLedger},
		{"duplicated in statement", r.DuplicatedInStatement}, {"not sent (rejected, conflict, queued, held)", r.NotSent},
		{"failed here, not in statement (nothing taken on either side)", r.FailedNotInStatement},
		{"in another batch", r.InOtherBatch},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func operatorName(op int64) string {
	if op == 0 {
		return "unreadable"
	}
	return strconv.FormatInt(op, 10)
}

func codeName(c *int) string {
	if c == nil {
		return "-"
	}
	return strconv.Itoa(*c)
}
