package reports

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aopbatch/aopbatch/ledger"
)

// Options tune Build. The zero value is usable.
type Options struct {
	// MaskPII masks canumber, cellNumber and userName in every output,
	// keeping the last 4 characters: "XXXXXX4685".
	MaskPII bool
	// Now is the clock for "generated at" and ages; nil means time.Now.
	// Times in the text reports are shown in its location.
	Now func() time.Time
}

// Limits on the lists the summary carries, so it stays small for any batch;
// the complete per-row data is in rows.csv and reconciliation.csv.
const (
	maxAtRiskListed    = 100
	maxConflictsListed = 50
	maxCodeGroups      = 500
	maxCodeMessage     = 200
)

// ByState is one figure per row state; counts.total is every data row of
// the file, rejected and conflict included.
type ByState struct {
	Total     int64 `json:"total"`
	Success   int64 `json:"success"`
	Failed    int64 `json:"failed"`
	Refunded  int64 `json:"refunded"`
	Rejected  int64 `json:"rejected"`
	Conflict  int64 `json:"conflict"`
	Pending   int64 `json:"pending"`
	Duplicate int64 `json:"duplicate"`
	Unknown   int64 `json:"unknown"`
	Held      int64 `json:"held"`
	Queued    int64 `json:"queued"`
	Inflight  int64 `json:"inflight"`
}

func (b *ByState) field(s ledger.State) *int64 {
	switch s {
	case ledger.StateSuccess:
		return &b.Success
	case ledger.StateFailed:
		return &b.Failed
	case ledger.StateRefunded:
		return &b.Refunded
	case ledger.StateRejected:
		return &b.Rejected
	case ledger.StateConflict:
		return &b.Conflict
	case ledger.StatePending:
		return &b.Pending
	case ledger.StateDuplicate:
		return &b.Duplicate
	case ledger.StateUnknown:
		return &b.Unknown
	case ledger.StateHeld:
		return &b.Held
	case ledger.StateQueued:
		return &b.Queued
	case ledger.StateInflight:
		return &b.Inflight
	}
	return nil
}

// Get returns the figure for state s.
func (b ByState) Get(s ledger.State) int64 {
	if p := b.field(s); p != nil {
		return *p
	}
	return 0
}

func (b *ByState) add(s ledger.State, n int64) {
	b.Total += n
	if p := b.field(s); p != nil {
		*p += n
	}
}

// Tally is a number of rows and their amount.
type Tally struct {
	Rows        int64 `json:"rows"`
	AmountPaise int64 `json:"amount_paise"`
}

func (t *Tally) add(paise int64) {
	t.Rows++
	t.AmountPaise += paise
}

// OperatorTally is one operator's rows, in total and by state.
type OperatorTally struct {
	Operator int64            `json:"operator"` // 0: not readable (rejected rows)
	Total    Tally            `json:"total"`
	States   map[string]Tally `json:"states"`
}

// CodeTally is the rows that ended with one response code and message.
// Rows without a provider answer group by their error code (rejected) or
// by message alone.
type CodeTally struct {
	Code        *int   `json:"code"` // null: no provider response code
	Message     string `json:"message"`
	Rows        int64  `json:"rows"`
	AmountPaise int64  `json:"amount_paise"`
}

// AtRisk is the money whose fate is not settled: rows pending, duplicate,
// unknown, inflight, held or queued.
type AtRisk struct {
	Rows          int64       `json:"rows"`
	AmountPaise   int64       `json:"amount_paise"`
	OldestSeconds int64       `json:"oldest_unresolved_seconds"`
	Listed        []AtRiskRow `json:"listed"` // the oldest first, at most 100
}

// AtRiskRow is one unsettled row and how long it has been so: since it was
// first sent, or since the batch was created when it never was.
type AtRiskRow struct {
	Line              int          `json:"line"`
	ReferenceID       string       `json:"referenceid"`
	Operator          int64        `json:"operator"`
	CANumber          string       `json:"canumber"`
	AmountPaise       int64        `json:"amount_paise"`
	State             ledger.State `json:"state"`
	Since             time.Time    `json:"since"`
	UnresolvedSeconds int64        `json:"unresolved_seconds"`
	Message           string       `json:"message"`
}

// Duration is the span of the recharge attempts in the attempts log.
type Duration struct {
	FirstAttempt *time.Time `json:"first_attempt"`
	LastAttempt  *time.Time `json:"last_attempt"`
	Seconds      float64    `json:"seconds"`
}

// Throughput is what was sent over Duration.
type Throughput struct {
	RowsSent         int64   `json:"rows_sent"`
	RechargeAttempts int64   `json:"recharge_attempts"`
	StatusEnquiries  int64   `json:"status_enquiries"`
	PerSecond        float64 `json:"recharge_attempts_per_second"`
}

// LatencyBucket counts recharge attempts whose latency was at most UpToMS
// (and above the previous bucket's); UpToMS 0 is the open last bucket.
type LatencyBucket struct {
	UpToMS int64  `json:"up_to_ms"`
	Label  string `json:"label"`
	Count  int64  `json:"count"`
}

// Latency describes recharge attempts' latency.
type Latency struct {
	Count   int64           `json:"count"`
	P50MS   int64           `json:"p50_ms"`
	P95MS   int64           `json:"p95_ms"`
	P99MS   int64           `json:"p99_ms"`
	MaxMS   int64           `json:"max_ms"`
	SumMS   int64           `json:"sum_ms"`
	Buckets []LatencyBucket `json:"buckets"`
}

var latencyBounds = []int64{50, 100, 250, 500, 1000, 2500, 5000, 10000}

// RowRef names one row for a person to look at.
type RowRef struct {
	Line        int    `json:"line"`
	ReferenceID string `json:"referenceid"`
	AmountPaise int64  `json:"amount_paise"`
	Message     string `json:"message"`
}

// Attention is what a person should do next.
type Attention struct {
	Actions   []string `json:"actions"`
	Conflicts []RowRef `json:"conflicts"` // at most 50
}

// Summary is everything the reports show about one batch. Its exported
// fields are report.json.
type Summary struct {
	Batch          string          `json:"batch"`
	Source         string          `json:"source"`
	BatchCreated   time.Time       `json:"batch_created"`
	GeneratedAt    time.Time       `json:"generated_at"`
	Complete       bool            `json:"complete"` // every row is in a final state
	PIIMasked      bool            `json:"pii_masked"`
	Counts         ByState         `json:"counts"`
	AmountsPaise   ByState         `json:"amounts_paise"`
	AtRisk         AtRisk          `json:"at_risk"`
	Reconciliation Reconciliation  `json:"reconciliation"`
	ByOperator     []OperatorTally `json:"by_operator"`
	ByCode         []CodeTally     `json:"by_code"`
	Duration       Duration        `json:"duration"`
	Throughput     Throughput      `json:"throughput"`
	Latency        Latency         `json:"latency"`
	Attention      Attention       `json:"attention"`

	seq    int64
	header []string
	loc    *time.Location
	recon  *reconState
}

// atRiskHeap keeps the oldest unsettled rows: the youngest is on top, to be
// dropped when a older one arrives.
type atRiskHeap []AtRiskRow

func (h atRiskHeap) Len() int { return len(h) }
func (h atRiskHeap) Less(i, j int) bool {
	if !h[i].Since.Equal(h[j].Since) {
		return h[i].Since.After(h[j].Since)
	}
	return h[i].Line > h[j].Line
}
func (h atRiskHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *atRiskHeap) Push(x any)   { *h = append(*h, x.(AtRiskRow)) }
func (h *atRiskHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type codeKey struct {
	code int
	msg  string
}

// Build computes the summary of batch b from the ledger: one pass over its
// rows and one over its attempts log.
func Build(ctx context.Context, l *ledger.Ledger, b ledger.Batch, o Options) (*Summary, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	s := &Summary{
		Batch:        b.ID,
		Source:       b.Source,
		GeneratedAt:  t,
		BatchCreated: b.Created.In(t.Location()),
		PIIMasked:    o.MaskPII,
		ByOperator:   []OperatorTally{},
		ByCode:       []CodeTally{},
		AtRisk:       AtRisk{Listed: []AtRiskRow{}},
		Attention:    Attention{Actions: []string{}, Conflicts: []RowRef{}},
		seq:          b.Seq,
		header:       b.Header,
		loc:          t.Location(),
	}
	s.Reconciliation.Discrepancies = []Discrepancy{}
	ops := map[int64]*OperatorTally{}
	codes := map[codeKey]*CodeTally{}
	var risk atRiskHeap
	err := l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		s.Counts.add(r.State, 1)
		s.AmountsPaise.add(r.State, r.AmountPaise)
		if r.Attempts > 0 {
			s.Throughput.RowsSent++
		}
		op := ops[r.Operator]
		if op == nil {
			op = &OperatorTally{Operator: r.Operator, States: map[string]Tally{}}
			ops[r.Operator] = op
		}
		op.Total.add(r.AmountPaise)
		st := op.States[string(r.State)]
		st.add(r.AmountPaise)
		op.States[string(r.State)] = st

		k := codeKey{code: r.ResponseCode, msg: s.rowMessage(r)}
		if r.ResponseCode < 0 && r.ErrorCode != "" {
			k.msg = string(r.State) + ": " + r.ErrorCode
		}
		k.msg = clipN(oneLine(k.msg), maxCodeMessage)
		c := codes[k]
		if c == nil {
			if len(codes) >= maxCodeGroups {
				k = codeKey{code: -2, msg: "(other messages)"}
				c = codes[k]
			}
			if c == nil {
				c = &CodeTally{Message: k.msg}
				if k.code >= 0 {
					code := k.code
					c.Code = &code
				}
				codes[k] = c
			}
		}
		c.Rows++
		c.AmountPaise += r.AmountPaise

		if !r.State.Final() {
			since := b.Created
			if !r.FirstSent.IsZero() {
				since = r.FirstSent
			}
			age := int64(t.Sub(since) / time.Second)
			s.AtRisk.Rows++
			s.AtRisk.AmountPaise += r.AmountPaise
			s.AtRisk.OldestSeconds = max(s.AtRisk.OldestSeconds, age)
			if len(risk) < maxAtRiskListed || since.Before(risk[0].Since) || (since.Equal(risk[0].Since) && r.Line < risk[0].Line) {
				heap.Push(&risk, AtRiskRow{
					Line: r.Line, ReferenceID: r.ReferenceID, Operator: r.Operator, CANumber: s.mask(r.CANumber),
					AmountPaise: r.AmountPaise, State: r.State, Since: since.In(s.loc), UnresolvedSeconds: age,
					Message: s.rowMessage(r),
				})
				if len(risk) > maxAtRiskListed {
					heap.Pop(&risk)
				}
			}
		}
		if r.State == ledger.StateConflict && len(s.Attention.Conflicts) < maxConflictsListed {
			s.Attention.Conflicts = append(s.Attention.Conflicts, RowRef{
				Line: r.Line, ReferenceID: r.ReferenceID, AmountPaise: r.AmountPaise, Message: s.rowMessage(r),
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("report on batch %s: %w", b.ID, err)
	}
	s.Complete = s.AtRisk.Rows == 0
	s.AtRisk.Listed = append(s.AtRisk.Listed, risk...)
	sort.Slice(s.AtRisk.Listed, func(i, j int) bool {
		a, c := s.AtRisk.Listed[i], s.AtRisk.Listed[j]
		if !a.Since.Equal(c.Since) {
			return a.Since.Before(c.Since)
		}
		return a.Line < c.Line
	})
	for _, op := range ops {
		s.ByOperator = append(s.ByOperator, *op)
	}
	sort.Slice(s.ByOperator, func(i, j int) bool { return s.ByOperator[i].Operator < s.ByOperator[j].Operator })
	for _, c := range codes {
		s.ByCode = append(s.ByCode, *c)
	}
	sort.Slice(s.ByCode, func(i, j int) bool {
		a, c := s.ByCode[i], s.ByCode[j]
		if a.Rows != c.Rows {
			return a.Rows > c.Rows
		}
		ac, cc := -1, -1
		if a.Code != nil {
			ac = *a.Code
		}
		if c.Code != nil {
			cc = *c.Code
		}
		if ac != cc {
			return ac < cc
		}
		return a.Message < c.Message
	})
	if err := s.timing(ctx, l); err != nil {
		return nil, fmt.Errorf("report on batch %s: %w", b.ID, err)
	}
	s.Attention.Actions = s.actions()
	s.Reconciliation.ControlTotals.LedgerSuccessRows = s.Counts.Success
	s.Reconciliation.ControlTotals.LedgerSuccessPaise = s.AmountsPaise.Success
	return s, nil
}

// timing reads the attempts log for duration, throughput and latency.
func (s *Summary) timing(ctx context.Context, l *ledger.Ledger) error {
	var first, last time.Time
	var lat []int32
	err := l.EachAttempt(ctx, s.seq, func(a *ledger.AttemptRow) error {
		if a.Kind != "recharge" {
			s.Throughput.StatusEnquiries++
			return nil
		}
		s.Throughput.RechargeAttempts++
		if first.IsZero() || a.At.Before(first) {
			first = a.At
		}
		if a.At.After(last) {
			last = a.At
		}
		ms := a.Latency.Milliseconds()
		lat = append(lat, int32(min(ms, 1<<31-1)))
		s.Latency.SumMS += ms
		return nil
	})
	if err != nil {
		return err
	}
	if !first.IsZero() {
		f, la := first.In(s.loc), last.In(s.loc)
		s.Duration.FirstAttempt, s.Duration.LastAttempt = &f, &la
		ms := last.Sub(first).Milliseconds()
		s.Duration.Seconds = float64(ms) / 1000
		if ms > 0 {
			s.Throughput.PerSecond = roundHundredths(float64(s.Throughput.RechargeAttempts) * 1000 / float64(ms))
		}
	}
	s.Latency.Buckets = make([]LatencyBucket, len(latencyBounds)+1)
	prev := int64(0)
	for i, b := range latencyBounds {
		s.Latency.Buckets[i] = LatencyBucket{UpToMS: b, Label: fmt.Sprintf("%s–%s", msLabel(prev), msLabel(b))}
		prev = b
	}
	s.Latency.Buckets[len(latencyBounds)] = LatencyBucket{Label: "> " + msLabel(prev)}
	for _, v := range lat {
		i := sort.Search(len(latencyBounds), func(i int) bool { return int64(v) <= latencyBounds[i] })
		s.Latency.Buckets[i].Count++
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(p int) int64 { return int64(lat[(len(lat)-1)*p/100]) }
		s.Latency.Count = int64(len(lat))
		s.Latency.P50MS, s.Latency.P95MS, s.Latency.P99MS = q(50), q(95), q(99)
		s.Latency.MaxMS = int64(lat[len(lat)-1])
	}
	return nil
}

func roundHundredths(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func msLabel(ms int64) string {
	if ms >= 1000 {
		if ms%1000 == 0 {
			return fmt.Sprintf("%ds", ms/1000)
		}
		return fmt.Sprintf("%.1fs", float64(ms)/1000)
	}
	return fmt.Sprintf("%dms", ms)
}

// actions says what a person should do about the rows not settled well.
func (s *Summary) actions() []string {
	var a []string
	c := s.Counts
	if n := c.Pending + c.Duplicate + c.Unknown + c.Inflight; n > 0 {
		a = append(a, fmt.Sprintf("%s (%s rupees) not settled with the provider: run aopbatch resolve", rowsText(n),
			rupees(s.AmountsPaise.Pending+s.AmountsPaise.Duplicate+s.AmountsPaise.Unknown+s.AmountsPaise.Inflight)))
	}
	if n := c.Queued + c.Held; n > 0 {
		a = append(a, fmt.Sprintf("%s (%s rupees) not sent yet (queued or held): run aopbatch run again to resume", rowsText(n),
			rupees(s.AmountsPaise.Queued+s.AmountsPaise.Held)))
	}
	if c.Rejected > 0 {
		a = append(a, fmt.Sprintf("%s rejected, not sent: correct rejects.csv and submit it as a new file", rowsText(c.Rejected)))
	}
	if c.Conflict > 0 {
		a = append(a, fmt.Sprintf("%s in conflict (a referenceid of another batch), not sent: check that batch before paying under a new referenceid", rowsText(c.Conflict)))
	}
	if c.Failed > 0 {
		a = append(a, fmt.Sprintf("%s failed (%s rupees, nothing taken): aopbatch export --state failed gives a file to correct and send under new referenceids", rowsText(c.Failed), rupees(s.AmountsPaise.Failed)))
	}
	if c.Refunded > 0 {
		a = append(a, fmt.Sprintf("%s charged and refunded (%s rupees returned to the wallet)", rowsText(c.Refunded), rupees(s.AmountsPaise.Refunded)))
	}
	if a == nil {
		a = []string{}
	}
	return a
}

func rowsText(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// mask masks a personal value when the options ask for it.
func (s *Summary) mask(v string) string {
	if s.PIIMasked {
		return maskTail(v)
	}
	return v
}

// rowMessage is the row's message, with its canumber masked inside it too
// when masking is on (a provider may echo it).
func (s *Summary) rowMessage(r *ledger.Row) string {
	if s.PIIMasked && len(r.CANumber) >= 4 {
		return strings.ReplaceAll(r.Message, r.CANumber, maskTail(r.CANumber))
	}
	return r.Message
}

// Mismatched reports whether a statement was reconciled and some row did
// not match it: the report command then exits 2.
func (s *Summary) Mismatched() bool {
	r := s.Reconciliation
	return r.Performed && r.AmountMismatch+r.StatusMismatch+r.MissingInStatement+r.MissingInLedger+r.DuplicatedInStatement > 0
}

// TextSummary is a few lines for the terminal: counts, amounts, money at
// risk and the reconciliation's outcome.
func (s *Summary) TextSummary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch %s: %d rows, %s rupees\n", s.Batch, s.Counts.Total, rupees(s.AmountsPaise.Total))
	var parts []string
	for _, st := range ledger.States {
		if n := s.Counts.Get(st); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%s)", st, n, rupees(s.AmountsPaise.Get(st))))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, "  %s\n", strings.Join(parts, ", "))
	}
	if s.AtRisk.Rows > 0 {
		fmt.Fprintf(&b, "at risk: %d rows, %s rupees not settled, the oldest for %s\n",
			s.AtRisk.Rows, rupees(s.AtRisk.AmountPaise), ageText(s.AtRisk.OldestSeconds))
	} else {
		b.WriteString("at risk: nothing, every row is final\n")
	}
	if r := s.Reconciliation; r.Performed {
		// Every row of the batch is in one figure of the first line, so
		// they add up to the row count above; the second line is about
		// the statement's entries.
		fmt.Fprintf(&b, "reconciliation of %d rows: %d matched, %d amount mismatch, %d status mismatch, %d missing in statement, %d failed and not in statement (nothing taken), %d never sent\n",
			s.Counts.Total, r.Matched, r.AmountMismatch, r.StatusMismatch, r.MissingInStatement, r.FailedNotInStatement, r.NotSent)
		fmt.Fprintf(&b, "statement: %d entries; %d missing in ledger, %d duplicated in statement, %d of other batches\n",
			r.StatementRows, r.MissingInLedger, r.DuplicatedInStatement, r.InOtherBatch)
		ct := r.ControlTotals
		fmt.Fprintf(&b, "control totals: ledger success %s, statement success %s, difference %s\n",
			rupees(ct.LedgerSuccessPaise), rupees(ct.StatementSuccessPaise), signedRupees(ct.DifferencePaise))
	}
	return b.String()
}

// ageText renders seconds as a duration a person reads: "2h5m0s".
func ageText(sec int64) string {
	if sec < 0 {
		sec = 0
	}
	return (time.Duration(sec) * time.Second).String()
}
