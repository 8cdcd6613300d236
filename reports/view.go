package reports

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// view is the one model the Markdown, HTML and text renderers draw: every
// figure already written for people (₹ with Indian grouping, times in the
// report's zone), every list with what it leaves out said. The renderers
// only lay it out, so the three can never say different things.
type view struct {
	Batch, Source, Created, Generated string
	PIIMasked                         bool
	// Verdict is the first line a reader sees, and its tone: "ok" only
	// when nothing is at risk and no statement disagrees.
	Verdict, Tone string
	Risk          []riskView
	Recon         *reconView
	Actions       []string
	States        []stateView
	TotalRows     int64
	TotalAmount   string
	Operators     []opView
	Codes         []codeView
	CodesMore     int
	Run           []string
	Conflicts     []refView
	Files         []string

	StateChart, OperatorChart chart
	Latency                   *chart
}

type riskView struct {
	Key, Title, Explain string
	Rows                int64
	Amount, Oldest      string
	Ageing              []ageView
	List                []riskRowView
	More                int64 // rows not listed here
}

type ageView struct {
	Label  string
	Rows   int64
	Amount string
}

type riskRowView struct {
	Line                                    int
	Ref, State, Amount, Age, Since, Message string
}

type reconView struct {
	Bad             bool
	Headline        string
	Lines           int64
	Categories      []catView
	Control         []controlView
	DiffExplain     string
	StatementTotals []catView
	NetToRecover    string
	NetExplain      string
	List            []discView
	More            []string // "5 more missing_in_ledger in reconciliation.csv"
}

type catView struct {
	Name   string
	N      int64
	Amount string
}

type controlView struct{ Name, Ledger, Statement, Diff string }

type discView struct{ Category, Line, Ref, State, Amount, SLine, SStatus, SAmount, Note string }

type stateView struct {
	Name   string
	N      int64
	Amount string
}

type opView struct {
	Name                     string
	Rows, SRows, FRows       int64
	Amount, SAmount, FAmount string
}

type codeView struct {
	Code, Outcome, Message, Amount string
	Rows                           int64
}

type refView struct {
	Line                 int
	Ref, Amount, Message string
}

// listedLimit bounds the rows each list of the human reports shows; every
// list says how many more rows.csv or reconciliation.csv has.
const listedLimit = 20

const timeText = "2006-01-02 15:04:05 MST"

func (s *Summary) when(t time.Time) string { return t.In(s.loc).Format(timeText) }

// view builds the model once per Write.
func (s *Summary) view() *view {
	v := &view{
		Batch: s.Batch, Source: orDash(s.Source), Created: s.when(s.BatchCreated), Generated: s.when(s.GeneratedAt),
		PIIMasked: s.PIIMasked, Actions: s.Attention.Actions, TotalRows: s.Counts.Total, TotalAmount: inr(s.AmountsPaise.Total),
	}
	u, n := s.AtRisk.OutcomeUnknown, s.AtRisk.NotYetSent
	switch {
	case len(s.Running) > 0:
		// Before anything else: every figure below is a moment of a run.
		v.Tone, v.Verdict = "risk", s.runningText()+": these figures are still changing; report again once it has ended."
	case !s.FileRecorded:
		// Before the money: every figure below is of part of the file.
		v.Tone, v.Verdict = "risk", s.partText()+"."
	case s.Mismatched():
		v.Tone, v.Verdict = "bad", "The ledger and the statement disagree: see the reconciliation below before paying anything again."
	case u.Rows > 0:
		v.Tone, v.Verdict = "risk", fmt.Sprintf("%s sent with no final answer yet: money may have moved.", inr(u.AmountPaise))
	case n.Rows > 0:
		v.Tone, v.Verdict = "risk", fmt.Sprintf("%s not sent yet: run the batch again to send it.", inr(n.AmountPaise))
		if fix, ok := accountStops[s.stopCode]; ok {
			v.Verdict = fmt.Sprintf("%s not sent yet: %s, then run the batch again to send it.", inr(n.AmountPaise), fix)
		}
		if s.sentBefore > 0 {
			v.Verdict = fmt.Sprintf("%s not sent: this file was sent before, most likely from another ledger: send it from the ledger that sent it.", inr(n.AmountPaise))
		}
	default:
		v.Tone, v.Verdict = "ok", "Every row is final; nothing is at risk."
		if s.Reconciliation.Performed {
			v.Verdict += " The ledger and the statement agree."
		}
	}
	v.Risk = []riskView{
		s.riskView(u, "outcome-unknown", "Outcome unknown", "sent, no final answer (inflight, pending, duplicate, unknown): the provider may have taken the money; aopbatch resolve settles them, never a resend"),
		s.riskView(n, "not-yet-sent", "Not yet sent", "queued or held: nothing has moved; running the batch again sends them"),
	}
	if s.Reconciliation.Performed {
		v.Recon = s.reconView()
	}
	var labels, values, classes []string
	var counts []int64
	for _, st := range ledger.States {
		c := s.Counts.Get(st)
		if c == 0 {
			continue
		}
		v.States = append(v.States, stateView{string(st), c, inr(s.AmountsPaise.Get(st))})
		labels = append(labels, string(st))
		values = append(values, strconv.FormatInt(c, 10))
		classes = append(classes, "s-"+string(st))
		counts = append(counts, c)
	}
	v.StateChart = hbars("rows by state", labels, values, classes, counts, nil)
	for _, op := range s.ByOperator {
		sc, fl := op.States[string(ledger.StateSuccess)], op.States[string(ledger.StateFailed)]
		v.Operators = append(v.Operators, opView{operatorName(op.Operator), op.Total.Rows, sc.Rows, fl.Rows,
			inr(op.Total.AmountPaise), inr(sc.AmountPaise), inr(fl.AmountPaise)})
	}
	v.OperatorChart = s.operatorChart()
	for i, c := range s.ByCode {
		if i == listedLimit {
			v.CodesMore = len(s.ByCode) - i
			break
		}
		v.Codes = append(v.Codes, codeView{codeName(c.Code), orDash(string(c.State)), orDash(c.Message), inr(c.AmountPaise), c.Rows})
	}
	if s.Duration.FirstAttempt != nil {
		v.Run = []string{
			"first request " + s.when(*s.Duration.FirstAttempt) + ", last " + s.when(*s.Duration.LastAttempt) +
				" (" + (time.Duration(s.Duration.Seconds*1000) * time.Millisecond).String() + ")",
			fmt.Sprintf("%d rows sent, %d recharge requests (%.2f/s), %d status enquiries",
				s.Throughput.RowsSent, s.Throughput.RechargeAttempts, s.Throughput.PerSecond, s.Throughput.StatusEnquiries),
			fmt.Sprintf("latency p50 %s, p90 %s, p95 %s, p99 %s, max %s", msText(s.Latency.P50MS), msText(s.Latency.P90MS), msText(s.Latency.P95MS), msText(s.Latency.P99MS), msText(s.Latency.MaxMS)),
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
		v.Conflicts = append(v.Conflicts, refView{c.Line, c.ReferenceID, inr(c.AmountPaise), c.Message})
	}
	v.Files = []string{
		"rows.csv: every row of the file with its state, the provider's txnid and operator reference, first sent and settled times; amounts in plain rupees",
		"rejects.csv: the rejected rows as they came, plus line, error_code, reason and fixable (\"review\": a repeated referenceid, possibly the same payment twice, or a retry refused for the row it retries; \"no\": the statement shows it charged)",
	}
	if s.Reconciliation.Performed {
		v.Files = append(v.Files, "reconciliation.csv: every row and statement line with its category")
	}
	v.Files = append(v.Files, "report.xlsx: the same figures as a workbook; report.json: for programs; report.html: with charts")
	return v
}

func (s *Summary) riskView(g RiskGroup, key, title, explain string) riskView {
	rv := riskView{Key: key, Title: title, Explain: explain, Rows: g.Rows, Amount: inr(g.AmountPaise), Oldest: ageText(g.OldestSeconds)}
	for _, b := range g.Ageing {
		rv.Ageing = append(rv.Ageing, ageView{b.Label, b.Rows, inr(b.AmountPaise)})
	}
	for i, r := range g.Listed {
		if i == listedLimit {
			break
		}
		rv.List = append(rv.List, riskRowView{r.Line, r.ReferenceID, string(r.State), inr(r.AmountPaise), ageText(r.UnresolvedSeconds), s.when(r.Since), r.Message})
	}
	rv.More = g.Rows - int64(len(rv.List))
	return rv
}

func (s *Summary) reconView() *reconView {
	r := s.Reconciliation
	ct := r.ControlTotals
	rv := &reconView{Bad: s.Mismatched(), Lines: r.StatementRows, NetToRecover: signedINR(r.NetToRecoverPaise)}
	rv.Headline = "The ledger and the statement agree."
	if rv.Bad {
		rv.Headline = "The ledger and the statement disagree. Every row is in reconciliation.csv."
	}
	for _, c := range reconRows(r) {
		rv.Categories = append(rv.Categories, catView{c.name, c.n, inr(r.AmountsPaise[c.cat])})
	}
	rows := ct.StatementSuccessRows - ct.LedgerSuccessRows
	rv.Control = []controlView{
		{"success rows", strconv.FormatInt(ct.LedgerSuccessRows, 10), strconv.FormatInt(ct.StatementSuccessRows, 10), fmt.Sprintf("%+d", rows)},
		{"success amount", inr(ct.LedgerSuccessPaise), inr(ct.StatementSuccessPaise), signedINR(ct.DifferencePaise)},
	}
	rv.DiffExplain = "difference = statement minus ledger: positive, the provider shows more charged than the ledger says it paid; negative, less. Repeated statement lines count: a double charge is money too."
	rv.NetExplain = "net to recover = extra charges (repeated lines) plus amounts charged above the ledger's, less amounts charged below it: what to claim from the provider. Rows whose status disagrees are not in it: aopbatch reconcile confirms them with the provider first."
	if s.asked != nil {
		rv.NetExplain = "net to recover = extra charges (repeated lines) plus amounts charged above the ledger's, less amounts charged below it: what to claim from the provider. Rows whose status disagrees are not in it: aopbatch reconcile has asked the provider about each it sent, and recorded what the provider confirmed; each row's answer is in reconciliation.csv."
	}
	t := r.StatementTotals
	rv.StatementTotals = []catView{
		{"lines", t.Lines, inr(t.AmountPaise())},
		{"success (charged)", t.Success.Rows, inr(t.Success.AmountPaise)},
		{"refunded", t.Refunded.Rows, inr(t.Refunded.AmountPaise)},
		{"failed", t.Failed.Rows, inr(t.Failed.AmountPaise)},
		{"pending", t.Pending.Rows, inr(t.Pending.AmountPaise)},
	}
	listed := map[Category]int64{}
	var order []Category
	for _, d := range r.Discrepancies {
		if listed[d.Category] == 0 {
			order = append(order, d.Category)
		}
		listed[d.Category]++
		dv := discView{Category: string(d.Category), Ref: d.ReferenceID, State: string(d.State), SStatus: d.StatementStatus, Note: d.Note}
		if d.Line > 0 {
			dv.Line, dv.Amount = strconv.Itoa(d.Line), inr(d.AmountPaise)
		}
		if d.StatementLine > 0 {
			dv.SLine, dv.SAmount = strconv.Itoa(d.StatementLine), inr(d.StatementAmountPaise)
		}
		rv.List = append(rv.List, dv)
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i] < order[j] })
	for _, c := range order {
		if more := *s.count(c) - listed[c]; more > 0 {
			rv.More = append(rv.More, fmt.Sprintf("%d more %s in reconciliation.csv", more, c))
		}
	}
	return rv
}

const maxChartOperators = 12

func (s *Summary) operatorChart() chart {
	top := append([]OperatorTally(nil), s.ByOperator...)
	sort.SliceStable(top, func(i, j int) bool { return top[i].Total.AmountPaise > top[j].Total.AmountPaise })
	if len(top) > maxChartOperators {
		top = top[:maxChartOperators]
	}
	var labels, values, classes []string
	var counts, totals []int64
	for _, op := range top {
		sc := op.States[string(ledger.StateSuccess)]
		labels = append(labels, "operator "+operatorName(op.Operator))
		values = append(values, inr(op.Total.AmountPaise)+" (success "+inr(sc.AmountPaise)+")")
		classes = append(classes, "b-success")
		counts = append(counts, sc.AmountPaise)
		totals = append(totals, op.Total.AmountPaise)
	}
	return hbars("amount by operator (light: all rows; dark: success)", labels, values, classes, counts, totals)
}

type namedCount struct {
	cat  Category
	name string
	n    int64
}

func reconRows(r Reconciliation) []namedCount {
	rows := []namedCount{
		{Matched, "matched (success, failed, refunded or pending alike)", r.Matched}, {AmountMismatch, "amount mismatch", r.AmountMismatch}, {StatusMismatch, "status mismatch", r.StatusMismatch},
		{MissingInStatement, "missing in statement", r.MissingInStatement}, {MissingInLedger, "missing in ledger", r.MissingInLedger},
		{DuplicatedInStatement, "duplicated in statement", r.DuplicatedInStatement}, {NotSent, "not sent (rejected, conflict, queued, held)", r.NotSent},
		{FailedNotInStatement, "failed here, not in statement (nothing taken on either side)", r.FailedNotInStatement},
		{InOtherBatch, "in another batch", r.InOtherBatch},
	}
	if r.CountedInOtherBatch > 0 {
		rows = append(rows, namedCount{CountedInOtherBatch, countedInText(r), r.CountedInOtherBatch})
	}
	return rows
}

// countedInText names the statement lines no batch holds that another
// batch's report counts.
func countedInText(r Reconciliation) string {
	return "in no batch, counted in the report of batch " + r.CountedIn + " (reconciled with this one), not here"
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

// msText is a latency the ledger logged in whole milliseconds: "0 ms"
// there is an answer within the millisecond, which the run summary gives
// as e.g. 810µs, so it reads "<1 ms".
func msText(ms int64) string {
	if ms <= 0 {
		return "<1 ms"
	}
	return fmt.Sprintf("%d ms", ms)
}
