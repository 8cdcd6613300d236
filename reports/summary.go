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
	// Location, when set, is the time zone every time is shown in
	// (report --tz Asia/Kolkata); nil keeps Now's.
	Location *time.Location
	// Asked is what aopbatch reconcile learnt from the provider about
	// the rows a statement disputes, by line; non-nil once it has asked
	// (about none, maybe). A reconciled report then says what the
	// provider answered instead of advising to ask it.
	Asked map[int]Asked
}

// Asked is the provider's answer to aopbatch reconcile about one row a
// statement disputes.
type Asked struct {
	// Why is what the answer means for the row, for a person: "the
	// provider confirms success, as the ledger has it".
	Why string
	// Final is true when the answer is the provider's last word on the
	// row (a final status, no record of it, or a record of another
	// payment); false when it had the row pending or gave no usable
	// answer, and asking again may tell more.
	Final bool
	// To is the state the ledger was corrected to; empty when it was
	// left as it was.
	To ledger.State
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

// CodeTally is the rows that got one response code and stand in one
// state: one outcome per line. Rows without a provider answer group by
// state and error code (rejected: "bad_amount"). Message is what the code
// means, or the first message seen for it.
type CodeTally struct {
	Code        *int         `json:"code"` // null: no provider response code
	State       ledger.State `json:"state"`
	Message     string       `json:"message"`
	Rows        int64        `json:"rows"`
	AmountPaise int64        `json:"amount_paise"`

	// fromMessage: Message is the first row's message, first (a code
	// without a published meaning, or no code and no error code); mixed:
	// a later row's message differs, so it is not true of them all.
	fromMessage bool
	first       string
	mixed       bool
}

// AtRisk is the money whose fate is not settled, as two figures that are
// never added up (SPEC section 6): money that may have moved, and money
// that has not.
type AtRisk struct {
	// OutcomeUnknown rows were sent and have no final answer (inflight,
	// pending, duplicate, unknown): the provider may have taken the money.
	// They are settled by aopbatch resolve, never by sending again.
	OutcomeUnknown RiskGroup `json:"outcome_unknown"`
	// NotYetSent rows were never sent (queued, held): nothing has moved;
	// a rerun sends them.
	NotYetSent RiskGroup `json:"not_yet_sent"`
}

// RiskGroup is one figure of money at risk and its rows.
type RiskGroup struct {
	Rows          int64       `json:"rows"`
	AmountPaise   int64       `json:"amount_paise"`
	OldestSeconds int64       `json:"oldest_unresolved_seconds"`
	Ageing        []AgeBucket `json:"ageing"`
	Listed        []AtRiskRow `json:"listed"` // the oldest first, at most 100

	heap atRiskHeap
}

// AgeBucket counts the unsettled rows whose age is at most UpToSeconds
// (and above the previous bucket's); UpToSeconds 0 is the open last one.
type AgeBucket struct {
	Label       string `json:"label"`
	UpToSeconds int64  `json:"up_to_seconds"`
	Rows        int64  `json:"rows"`
	AmountPaise int64  `json:"amount_paise"`
}

// ageBounds are the ageing buckets finance chases by: within the hour,
// the day, three days, a week, and older.
var ageBounds = []struct {
	label string
	sec   int64
}{{"under 1 hour", 3600}, {"1 to 24 hours", 86400}, {"1 to 3 days", 3 * 86400}, {"3 to 7 days", 7 * 86400}, {"over 7 days", 0}}

func newRiskGroup() RiskGroup {
	g := RiskGroup{Listed: []AtRiskRow{}, Ageing: make([]AgeBucket, len(ageBounds))}
	for i, b := range ageBounds {
		g.Ageing[i] = AgeBucket{Label: b.label, UpToSeconds: b.sec}
	}
	return g
}

func (g *RiskGroup) add(r AtRiskRow) {
	g.Rows++
	g.AmountPaise += r.AmountPaise
	g.OldestSeconds = max(g.OldestSeconds, r.UnresolvedSeconds)
	for i := range g.Ageing {
		if b := g.Ageing[i].UpToSeconds; b == 0 || r.UnresolvedSeconds <= b {
			g.Ageing[i].Rows++
			g.Ageing[i].AmountPaise += r.AmountPaise
			break
		}
	}
	h := &g.heap
	if len(*h) < maxAtRiskListed || r.Since.Before((*h)[0].Since) || (r.Since.Equal((*h)[0].Since) && r.Line < (*h)[0].Line) {
		heap.Push(h, r)
		if len(*h) > maxAtRiskListed {
			heap.Pop(h)
		}
	}
}

func (g *RiskGroup) finish() {
	g.Listed = append(g.Listed[:0], g.heap...)
	g.heap = nil
	sort.Slice(g.Listed, func(i, j int) bool {
		a, c := g.Listed[i], g.Listed[j]
		if !a.Since.Equal(c.Since) {
			return a.Since.Before(c.Since)
		}
		return a.Line < c.Line
	})
}

// Rows is the number of rows not final, in both figures.
func (a AtRisk) Rows() int64 { return a.OutcomeUnknown.Rows + a.NotYetSent.Rows }

// AtRiskRow is one unsettled row and how long it has been so: since it was
// first sent, or taken in flight by a run (dispatched, claimed), or since
// the batch was created when it never was.
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
	P90MS   int64           `json:"p90_ms"` // the run summary's percentile
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
	Batch        string    `json:"batch"`
	Source       string    `json:"source"`
	BatchCreated time.Time `json:"batch_created"`
	GeneratedAt  time.Time `json:"generated_at"`
	Complete     bool      `json:"complete"` // the file wholly recorded and every row in a final state
	// FileRecorded is false when a run stopped while it recorded the
	// file: every figure is then of the rows recorded, part of the file.
	FileRecorded   bool            `json:"file_recorded"`
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
	// Running lists the processes that held the batch when it was read:
	// while there are any, its rows are changing and its figures with them.
	Running []Runner `json:"running,omitempty"`

	seq    int64
	header []string
	loc    *time.Location
	recon  *reconState
	asked  map[int]Asked // Options.Asked
	// stopCode is the code of the account-stop answer (accountStops) the
	// batch's last run stopped on, or 0: rows left unsent then wait for
	// that fix, not only for a rerun.
	stopCode int
	// sentBefore counts the rows the provider already held when the
	// batch's last run asked about them before its first send (the
	// engine's check for a file sent before from another ledger): that
	// run stopped, and a rerun on this ledger stops the same way.
	sentBefore, sentBeforeAsked int64
	// failedLater are the failed rows a later batch of this ledger holds
	// (paidLater): sent again already, or offered by that batch's own
	// export. Export leaves them out, and so does the advice.
	failedLater Tally
	// failedPaidBehind are the failed rows, not among failedLater, that
	// retry a row found charged or unsettled since (ledger.RetryWalker):
	// export leaves them out.
	failedPaidBehind Tally
	// rejectedPaidBehind are the rejected rows that retry a row found
	// charged or unsettled since, by line, saying which (rejects.csv
	// marks them, and the advice leaves them out).
	rejectedPaidBehind map[int]string
	// rejectedLater are the rejected rows a later batch holds, by line,
	// with that batch's row (paidLater): corrected and sent already, or
	// offered by that batch's own export. rejects.csv marks them.
	rejectedLater map[int]heldLater
	// repeatedRefs counts the rejected rows that repeat the referenceid
	// of another line of the file: possibly a payment listed twice.
	repeatedRefs int64
	// retryRefused counts the rejected and conflict rows refused for the
	// row they retry (retryof): retried already by another row, not this
	// ledger's, or not one to pay again. Export leaves them out.
	retryRefused struct{ rejected, conflict int64 }
	// unreadAmounts counts the rejected rows whose amount could not be
	// read (for whatever reason they were rejected): their money is not
	// in the rejected sum.
	unreadAmounts int64
	// copied: the batch is not ready yet holds rows a request moved, so a
	// ledger copy stopped part way, not a run recording its file.
	copied bool
}

// Runner is a process running the batch as it was read.
type Runner struct {
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	LeaseUntil time.Time `json:"lease_until"`
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
	code  int
	state ledger.State
	err   string // error code, for rows without a response code
}

// Build computes the summary of batch b from the ledger: one pass over its
// rows and one over its attempts log.
func Build(ctx context.Context, l ledger.Reader, b ledger.Batch, o Options) (*Summary, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	if o.Location != nil {
		t = t.In(o.Location)
	}
	s := &Summary{
		Batch:        b.ID,
		Source:       b.Source,
		GeneratedAt:  t,
		BatchCreated: b.Created.In(t.Location()),
		PIIMasked:    o.MaskPII,
		FileRecorded: b.Ready,
		ByOperator:   []OperatorTally{},
		ByCode:       []CodeTally{},
		AtRisk:       AtRisk{OutcomeUnknown: newRiskGroup(), NotYetSent: newRiskGroup()},
		Attention:    Attention{Actions: []string{}, Conflicts: []RowRef{}},
		seq:          b.Seq,
		header:       b.Header,
		loc:          t.Location(),
		asked:        o.Asked,
	}
	s.Reconciliation.Discrepancies = []Discrepancy{}
	// Read first: a run that ends while the rows are read changed them.
	runners, err := l.Runners(ctx, b.Seq)
	if err != nil {
		return nil, fmt.Errorf("report on batch %s: %w", b.ID, err)
	}
	for _, r := range runners {
		s.Running = append(s.Running, Runner{Host: r.Host, PID: r.PID, LeaseUntil: r.Until.In(s.loc)})
	}
	ops := map[int64]*OperatorTally{}
	codes := map[codeKey]*CodeTally{}
	var retries []retryRow // failed and rejected rows that retry another
	err = l.EachRow(ctx, b.Seq, func(r *ledger.Row) error {
		s.Counts.add(r.State, 1)
		s.AmountsPaise.add(r.State, r.AmountPaise)
		s.copied = s.copied || !b.Ready && r.State.Sent()
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

		k := codeKey{code: r.ResponseCode, state: r.State}
		if r.ResponseCode < 0 {
			k.err = r.ErrorCode
		}
		c := codes[k]
		if c == nil {
			if len(codes) >= maxCodeGroups {
				k = codeKey{code: -2, err: "(other)"}
				c = codes[k]
			}
			if c == nil {
				c = &CodeTally{State: r.State, Message: codeMeaning(k.code, k.err, s.rowMessage(r))}
				if k.code == -2 {
					c.State, c.Message = "", "(other codes and states)"
				}
				if k.code >= 0 {
					code := k.code
					c.Code = &code
				}
				_, known := codeMeanings[k.code]
				c.fromMessage, c.first = !known && (k.code >= 0 || k.err == ""), r.Message
				codes[k] = c
			}
		}
		c.mixed = c.mixed || (c.fromMessage && r.Message != c.first)
		c.Rows++
		c.AmountPaise += r.AmountPaise

		if !r.State.Final() {
			// Sent rows are at risk since their first send, a row in
			// flight for the first time since its run took it (a
			// dispatch records that before any request goes), and rows
			// never sent since the batch was recorded.
			since := b.Created
			switch {
			case !r.FirstSent.IsZero():
				since = r.FirstSent
			case !r.InFlightSince.IsZero():
				since = r.InFlightSince
			}
			ar := AtRiskRow{
				Line: r.Line, ReferenceID: r.ReferenceID, Operator: r.Operator, CANumber: s.mask(r.CANumber),
				AmountPaise: r.AmountPaise, State: r.State, Since: since.In(s.loc), UnresolvedSeconds: int64(t.Sub(since) / time.Second),
				Message: s.rowMessage(r),
			}
			if r.State == ledger.StateQueued || r.State == ledger.StateHeld {
				s.AtRisk.NotYetSent.add(ar)
			} else {
				s.AtRisk.OutcomeUnknown.add(ar)
			}
		}
		if r.State == ledger.StateRejected && r.ErrorCode == codeDuplicateRef {
			s.repeatedRefs++
		}
		switch {
		case ledger.RefusedForRetry(r.ErrorCode) && r.State == ledger.StateRejected:
			s.retryRefused.rejected++
		case ledger.RefusedForRetry(r.ErrorCode) && r.State == ledger.StateConflict:
			s.retryRefused.conflict++
		case r.RetryOf != "" && (r.State == ledger.StateFailed || r.State == ledger.StateRejected):
			retries = append(retries, retryRow{line: r.Line, state: r.State, paise: r.AmountPaise, of: r.RetryOf})
		}
		// Not only rows rejected for their amount: a row with more or
		// fewer cells than the header, or one rejected for another column
		// first, has no amount read either.
		if r.State == ledger.StateRejected && r.AmountPaise == 0 {
			s.unreadAmounts++
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
	s.Complete = s.AtRisk.Rows() == 0 && s.FileRecorded
	if s.Complete {
		// Every row final: a run that still holds the batch (a process of
		// a shared ledger writing its own report) changes none of them.
		s.Running = nil
	}
	s.AtRisk.OutcomeUnknown.finish()
	s.AtRisk.NotYetSent.finish()
	for _, op := range ops {
		s.ByOperator = append(s.ByOperator, *op)
	}
	sort.Slice(s.ByOperator, func(i, j int) bool { return s.ByOperator[i].Operator < s.ByOperator[j].Operator })
	for _, c := range codes {
		if c.mixed {
			// One row's own message is not what the others got.
			c.Message = mixedMeaning(c.State)
		}
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
		if a.State != c.State {
			return a.State < c.State
		}
		return a.Message < c.Message
	})
	if err := s.timing(ctx, l); err != nil {
		return nil, fmt.Errorf("report on batch %s: %w", b.ID, err)
	}
	if s.Counts.Failed > 0 || s.Counts.Rejected > 0 {
		if err := s.countLater(ctx, l, b, retries); err != nil {
			return nil, fmt.Errorf("report on batch %s: %w", b.ID, err)
		}
	}
	s.Attention.Actions = s.actions()
	s.Reconciliation.ControlTotals.LedgerSuccessRows = s.Counts.Success
	s.Reconciliation.ControlTotals.LedgerSuccessPaise = s.AmountsPaise.Success
	return s, nil
}

// retryRow is a failed or rejected row that retries another (retryof).
type retryRow struct {
	line  int
	state ledger.State
	paise int64
	of    string
}

// countLater sets what of batch b's failed and rejected rows is not to be
// sent again from it, in one read of the later batches (paidLater):
// failedLater and rejectedLater, the rows a later batch holds (a batch's
// report read after its retry ran would otherwise still say to export
// rows that export leaves out, and the batches' reports together would
// count each retried payment again); then, of the rest, the retries
// whose first payment was found charged or unsettled since (a retry pays
// the rows behind it too: export leaves them out), failedPaidBehind and
// rejectedPaidBehind.
func (s *Summary) countLater(ctx context.Context, l ledger.Reader, b ledger.Batch, retries []retryRow) error {
	later, err := paidLater(ctx, l, b, ledger.StateFailed, ledger.StateRejected)
	if err != nil {
		return err
	}
	s.rejectedLater = map[int]heldLater{}
	for line, h := range later {
		if h.state == ledger.StateFailed {
			s.failedLater.add(h.paise)
		} else {
			s.rejectedLater[line] = h
		}
	}
	w := ledger.NewRetryWalker(l)
	for _, r := range retries {
		if _, held := later[r.line]; held {
			continue // counted once: told of as held by a later batch
		}
		k, blocked, err := w.Blocker(ctx, r.of)
		if err != nil {
			return err
		}
		switch {
		case !blocked:
		case r.state == ledger.StateFailed:
			s.failedPaidBehind.add(r.paise)
		default:
			if s.rejectedPaidBehind == nil {
				s.rejectedPaidBehind = map[int]string{}
			}
			s.rejectedPaidBehind[r.line] = fmt.Sprintf("it retries batch %s line %d, %s: do not send it", k.BatchID, k.Line, linkState(k))
		}
	}
	return nil
}

// probe is an enquiry about a row not sent yet, and whether it found the
// row at the provider.
type probe struct {
	line  int
	at    time.Time
	found bool
}

// sentBeforeCheck sets sentBefore when the enquiries made after the last
// Recharge (at last) about rows not sent yet found enough of them at the
// provider, by the engine's rule (ledger.SentBefore), and those rows are
// not sent yet still: the last run stopped for a file sent before, and
// every rerun on this ledger stops the same way. Fewer found, the run
// went on (rows paid by hand), or was interrupted.
func (s *Summary) sentBeforeCheck(ctx context.Context, l ledger.Reader, probes []probe, last time.Time) error {
	asked, found := map[int]bool{}, map[int]bool{}
	for _, p := range probes {
		if p.at.After(last) {
			asked[p.line] = true
			found[p.line] = found[p.line] || p.found
		}
	}
	n := 0
	for line, f := range found {
		if !f {
			continue
		}
		r, err := l.Row(ctx, s.seq, line)
		if err != nil {
			return err
		}
		if r.State == ledger.StateQueued && r.Attempts == 0 && r.ResponseCode < 0 {
			n++
		}
	}
	if ledger.SentBefore(n, len(asked), ledger.KnownTrip) {
		s.sentBefore, s.sentBeforeAsked = int64(n), int64(len(asked))
	}
	return nil
}

// foundClasses are the status enquiries' verdicts (aop.Verdict) that
// found a transaction at the provider.
var foundClasses = map[string]bool{"success": true, "refunded": true, "failed": true, "pending": true}

// timing reads the attempts log for duration, throughput and latency.
func (s *Summary) timing(ctx context.Context, l ledger.Reader) error {
	var first, last time.Time
	var lat []int32
	// The run stopped on an account-stop answer when the latest of them
	// came after every request was sent: requests in flight then may
	// answer later, but none goes after it.
	var stopAnswer time.Time
	stopCode := -1
	// Enquiries about rows not sent yet are the check a run makes before
	// its first send (batch's probeKnown); see sentBeforeCheck.
	var probes []probe
	err := l.EachAttempt(ctx, s.seq, func(a *ledger.AttemptRow) error {
		if (a.Class == "auth" || a.Class == "not-sent") && a.HTTPStatus == 0 {
			// No credential could be had (a token command that failed), or
			// the request failed before it could reach the provider (a
			// refused connection): logged, but no request was made. The
			// run's count decides it alike (aop.Result.MadeRequest).
			return nil
		}
		if a.Kind != "recharge" {
			s.Throughput.StatusEnquiries++
			if a.State == ledger.StateQueued {
				probes = append(probes, probe{line: a.Line, at: a.At, found: foundClasses[a.Class]})
			}
			return nil
		}
		s.Throughput.RechargeAttempts++
		if first.IsZero() || a.At.Before(first) {
			first = a.At
		}
		if a.At.After(last) {
			last = a.At
		}
		if _, ok := accountStops[a.Code]; ok && !a.At.Add(a.Latency).Before(stopAnswer) {
			stopAnswer, stopCode = a.At.Add(a.Latency), a.Code
		}
		ms := a.Latency.Milliseconds()
		lat = append(lat, int32(min(ms, 1<<31-1)))
		s.Latency.SumMS += ms
		return nil
	})
	if err != nil {
		return err
	}
	if stopCode >= 0 && !last.After(stopAnswer) {
		s.stopCode = stopCode
	}
	if err := s.sentBeforeCheck(ctx, l, probes, last); err != nil {
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
		s.Latency.P50MS, s.Latency.P90MS, s.Latency.P95MS, s.Latency.P99MS = q(50), q(90), q(95), q(99)
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
// not match it, or a line charged a refid again: the report command then
// exits 2. A repeated line that is another status of a payment (pending,
// then charged) is not a disagreement.
func (s *Summary) Mismatched() bool {
	r := s.Reconciliation
	return r.Performed && r.AmountMismatch+r.StatusMismatch+r.MissingInStatement+r.MissingInLedger+r.ExtraCharges.Rows > 0
}

// mixedMeaning is a by-code line's meaning when its rows' messages
// differ: what its state says of them all.
func mixedMeaning(st ledger.State) string {
	switch st {
	case ledger.StateQueued:
		return "not sent yet (messages differ: see rows.csv)"
	case ledger.StateUnknown:
		return "no answer that could be read (messages differ: see rows.csv)"
	}
	return string(st) + " (messages differ: see rows.csv)"
}

// ageText renders seconds as a duration a person reads: "2h5m0s".
func ageText(sec int64) string {
	if sec < 0 {
		sec = 0
	}
	return (time.Duration(sec) * time.Second).String()
}
