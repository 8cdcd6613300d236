package reports

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// Category is how reconciliation classifies a ledger row or statement entry.
type Category string

// Categories; see the package doc for the rules.
const (
	Matched               Category = "matched"
	AmountMismatch        Category = "amount_mismatch"
	StatusMismatch        Category = "status_mismatch"
	MissingInStatement    Category = "missing_in_statement"
	MissingInLedger       Category = "missing_in_ledger"
	DuplicatedInStatement Category = "duplicated_in_statement"
	// NotSent rows were never sent (rejected, conflict, queued, held) and are
	// not on the statement: nothing to reconcile.
	NotSent Category = "not_sent"
	// FailedNotInStatement rows failed here and are not on the statement:
	// both sides say nothing was taken (a provider need not record a
	// request it declined), so this is not a mismatch.
	FailedNotInStatement Category = "failed_not_in_statement"
	// InOtherBatch entries belong to another batch of the same ledger.
	InOtherBatch Category = "in_other_batch"
	// CountedInOtherBatch entries are held by no batch of the ledger and
	// are counted, as missing_in_ledger, in the report of another batch
	// reconciled with the same statement at the same time (see
	// ReconcileTogether): not here, so that no line is counted twice.
	CountedInOtherBatch Category = "counted_in_other_batch"
)

// maxListedPerCategory bounds Reconciliation.Discrepancies per category;
// reconciliation.csv has them all.
const maxListedPerCategory = 20

// ControlTotals sets the ledger's success total beside the statement's:
// every line of the statement that shows a charge for a referenceid of
// this batch or of no batch, a line repeated on the statement included
// (a double charge is money too).
type ControlTotals struct {
	LedgerSuccessRows     int64 `json:"ledger_success_rows"`
	LedgerSuccessPaise    int64 `json:"ledger_success_paise"`
	StatementSuccessRows  int64 `json:"statement_success_rows"`
	StatementSuccessPaise int64 `json:"statement_success_paise"`
	// DifferencePaise is statement minus ledger: positive when the provider
	// kept more than the ledger says it paid.
	DifferencePaise int64 `json:"difference_paise"`
}

// Reconciliation is the outcome of comparing the ledger with a statement.
// Performed is false (and every figure zero) when no statement was given.
type Reconciliation struct {
	Performed             bool              `json:"performed"`
	StatementRows         int64             `json:"statement_rows"`
	StatementColumns      map[string]string `json:"statement_columns,omitempty"`
	Matched               int64             `json:"matched"`
	AmountMismatch        int64             `json:"amount_mismatch"`
	StatusMismatch        int64             `json:"status_mismatch"`
	MissingInStatement    int64             `json:"missing_in_statement"`
	MissingInLedger       int64             `json:"missing_in_ledger"`
	DuplicatedInStatement int64             `json:"duplicated_in_statement"`
	NotSent               int64             `json:"not_sent"`
	FailedNotInStatement  int64             `json:"failed_not_in_statement"`
	InOtherBatch          int64             `json:"in_other_batch"`
	// CountedInOtherBatch are the statement entries no batch holds that
	// the report of batch CountedIn counts (ReconcileTogether): none when
	// this batch was reconciled alone or first.
	CountedInOtherBatch int64         `json:"counted_in_other_batch,omitempty"`
	CountedIn           string        `json:"counted_in,omitempty"`
	ControlTotals       ControlTotals `json:"control_totals"`
	// AmountsPaise is each category's money: the ledger row's amount for
	// the categories of rows, the statement line's for the lines the
	// batch does not hold.
	AmountsPaise map[Category]int64 `json:"amounts_paise"`
	// StatementTotals are the statement's own figures, every line of it.
	StatementTotals StatementTotals `json:"statement_totals"`
	// MatchedSuccess are the matched rows recorded success: matched counts
	// failed and refunded rows the statement agrees on too, so beside the
	// batch's success figure it would seem to disagree with it.
	MatchedSuccess Tally `json:"matched_success"`
	// FailedButCharged are rows recorded failed that the statement shows
	// charged or pending: never to be sent again on the ledger's word.
	FailedButCharged Tally `json:"failed_but_charged"`
	// SuccessNotKept are rows recorded success that the statement shows
	// failed or refunded: the money is back in the wallet, the payee unpaid.
	SuccessNotKept Tally `json:"success_not_kept"`
	// ChargedNotSent are charges on the statement that aopbatch never
	// sent: no row of the ledger holds the referenceid, or only a
	// rejected, queued or held one. Someone else sent them.
	ChargedNotSent Tally `json:"charged_not_sent"`
	// ExtraCharges are the charged transactions of a refid on the
	// statement after its first (see Statement.payments).
	ExtraCharges Tally `json:"extra_charges"`
	// NetToRecoverPaise is what the provider kept beyond what the ledger
	// paid, row by row: extra charges plus amounts charged above the
	// ledger's, less amounts charged below it. Status disagreements are
	// not in it: aopbatch reconcile asks the provider about those.
	NetToRecoverPaise int64 `json:"net_to_recover_paise"`
	// Discrepancies lists the first rows of each category other than
	// matched, not_sent, failed_not_in_statement and in_other_batch (at
	// most 20 each).
	Discrepancies []Discrepancy `json:"discrepancies"`
}

// StatementTotals are a statement's lines by outcome.
type StatementTotals struct {
	Lines    int64 `json:"lines"`
	Success  Tally `json:"success"`
	Refunded Tally `json:"refunded"`
	Failed   Tally `json:"failed"`
	Pending  Tally `json:"pending"`
}

// AmountPaise is the amount of every line of the statement, whatever its
// outcome.
func (t StatementTotals) AmountPaise() int64 {
	return t.Success.AmountPaise + t.Refunded.AmountPaise + t.Failed.AmountPaise + t.Pending.AmountPaise
}

// Discrepancy is one classified row: a ledger row, a statement entry, or
// both when they were compared.
type Discrepancy struct {
	Category             Category     `json:"category"`
	Line                 int          `json:"line,omitempty"` // 0: not in this batch
	ReferenceID          string       `json:"referenceid"`
	State                ledger.State `json:"state,omitempty"`
	AmountPaise          int64        `json:"amount_paise"`
	ProviderTxnID        string       `json:"provider_txnid,omitempty"`
	StatementLine        int          `json:"statement_line,omitempty"` // 0: not on the statement
	StatementStatus      string       `json:"statement_status,omitempty"`
	StatementAmountPaise int64        `json:"statement_amount_paise"`
	StatementTxnID       string       `json:"statement_txnid,omitempty"`
	StatementOperatorRef string       `json:"statement_operatorid,omitempty"`
	Note                 string       `json:"note,omitempty"`

	their TheirStatus
	again bool // a statement line that is a second charge of its refid
	kept  bool // the line a charged transaction stands at: in the control totals
}

// reconState is what Write needs to classify the rows again while it
// streams them: the statement and which of its entries other batches hold.
type reconState struct {
	st    *Statement
	other []bool // by entry: held by a row of another batch
	// rejectedCharged notes, by line, the rejected rows whose referenceid
	// the statement shows charged: rejects.csv does not offer them again.
	rejectedCharged map[int]string
	// queuedCharged counts the queued and held rows the statement shows
	// charged: the advice to resume names them.
	queuedCharged int64
	// countedIn is the batch whose report counts the entries no batch of
	// the ledger holds, when it is not this one; sharedWith, for that
	// batch, the others reconciled with it (see ReconcileTogether).
	countedIn  string
	sharedWith []string
	// failedCharged and successNotKept are the rows of
	// Reconciliation.FailedButCharged and SuccessNotKept that aopbatch
	// reconcile asked the provider about (Options.Asked), by answer.
	failedCharged, successNotKept askedRows
}

// askedRows groups rows that aopbatch reconcile asked the provider about
// by its answer, in the order first seen.
type askedRows []askedGroup

type askedGroup struct {
	Asked
	Tally
}

func (a *askedRows) add(x Asked, paise int64) {
	for i := range *a {
		if g := &(*a)[i]; g.Why == x.Why && g.Final == x.Final && g.To == x.To {
			g.add(paise)
			return
		}
	}
	g := askedGroup{Asked: x}
	g.add(paise)
	*a = append(*a, g)
}

// split is the rows whose answer was final, and the others.
func (a askedRows) split() (final, open askedRows) {
	for _, g := range a {
		if g.Final {
			final = append(final, g)
		} else {
			open = append(open, g)
		}
	}
	return final, open
}

// total is every row asked about.
func (a askedRows) total() Tally {
	var t Tally
	for _, g := range a {
		t.Rows += g.Rows
		t.AmountPaise += g.AmountPaise
	}
	return t
}

// maxAnswersNamed bounds the answers an action names; reconciliation.csv
// has each row's.
const maxAnswersNamed = 3

// text names the answers and what the ledger recorded of each: "the
// provider has no record of this referenceid; the ledger is left as it
// is", or with several "2 rows: ... (...); 1 row: ... (...)". A row
// reconcile corrected may still disagree with the statement (a pending
// row corrected to failed that the statement shows charged): the ledger's
// state is then the provider's, not the run's.
func (a askedRows) text() string {
	if len(a) == 1 {
		return a[0].Why + "; " + a[0].recorded()
	}
	var parts []string
	for i, g := range a {
		if i == maxAnswersNamed {
			parts = append(parts, fmt.Sprintf("%d other answers", len(a)-i))
			break
		}
		parts = append(parts, rowsText(g.Rows)+": "+g.Why+" ("+g.recorded()+")")
	}
	return strings.Join(parts, "; ")
}

// recorded says what aopbatch reconcile recorded in the ledger of the
// answer, as noteAsked does.
func (x Asked) recorded() string {
	if x.To != "" {
		return fmt.Sprintf("recorded %s with the enquiry as evidence", x.To)
	}
	return "the ledger is left as it is"
}

func (s *Summary) count(c Category) *int64 {
	r := &s.Reconciliation
	switch c {
	case Matched:
		return &r.Matched
	case AmountMismatch:
		return &r.AmountMismatch
	case StatusMismatch:
		return &r.StatusMismatch
	case MissingInStatement:
		return &r.MissingInStatement
	case MissingInLedger:
		return &r.MissingInLedger
	case DuplicatedInStatement:
		return &r.DuplicatedInStatement
	case NotSent:
		return &r.NotSent
	case FailedNotInStatement:
		return &r.FailedNotInStatement
	case CountedInOtherBatch:
		return &r.CountedInOtherBatch
	}
	return &r.InOtherBatch
}

// Reconcile compares the batch's rows with statement st, filling
// s.Reconciliation. Write then also writes reconciliation.csv, one line per
// row and per statement entry the batch does not hold.
func (s *Summary) Reconcile(ctx context.Context, l ledger.Reader, st *Statement) error {
	return s.ReconcileTogether(ctx, l, st, nil)
}

// ReconcileTogether is Reconcile for one of the batches reconciled with
// the same statement at the same time, together being their ids in the
// order they are reconciled (this batch's among them). A statement entry
// that no batch of the ledger holds is missing_in_ledger for any one of
// them; counted in each, it would be counted once per batch. It is
// counted in the first batch's report only, and the others list it as
// counted_in_other_batch, outside every figure that is added up: across
// the reports each statement line is then counted once. With fewer than
// two batches this is Reconcile.
func (s *Summary) ReconcileTogether(ctx context.Context, l ledger.Reader, st *Statement, together []string) error {
	if st == nil {
		return errors.New("reconcile: no statement")
	}
	rc := &reconState{st: st, rejectedCharged: map[int]string{}}
	if len(together) > 1 {
		switch i := slices.Index(together, s.Batch); {
		case i < 0:
			return fmt.Errorf("reconcile batch %s: not among the batches reconciled together (%s)", s.Batch, strings.Join(together, ", "))
		case i == 0:
			rc.sharedWith = together[1:]
		default:
			rc.countedIn = together[0]
		}
	}
	r := Reconciliation{
		AmountsPaise:     map[Category]int64{},
		Performed:        true,
		StatementRows:    int64(st.Len()),
		StatementColumns: st.Columns(),
		Discrepancies:    []Discrepancy{},
		ControlTotals: ControlTotals{
			LedgerSuccessRows:  s.Counts.Success,
			LedgerSuccessPaise: s.AmountsPaise.Success,
		},
	}
	s.Reconciliation = r
	listed := map[Category]int{}
	rr := &s.Reconciliation
	for i := range st.entries {
		e := &st.entries[i]
		rr.StatementTotals.Lines++
		switch e.status {
		case TheirSuccess:
			rr.StatementTotals.Success.add(e.amount)
		case TheirRefunded:
			rr.StatementTotals.Refunded.add(e.amount)
		case TheirFailed:
			rr.StatementTotals.Failed.add(e.amount)
		case TheirPending:
			rr.StatementTotals.Pending.add(e.amount)
		}
	}
	err := s.walk(ctx, l, rc, func(_ *ledger.Row, d *Discrepancy) error {
		*s.count(d.Category)++
		ct := &s.Reconciliation.ControlTotals
		if d.kept && d.Category != InOtherBatch && d.Category != CountedInOtherBatch {
			ct.StatementSuccessRows++
			ct.StatementSuccessPaise += d.StatementAmountPaise
		}
		amount := d.AmountPaise
		if d.Line == 0 {
			amount = d.StatementAmountPaise
		}
		rr.AmountsPaise[d.Category] += amount
		if d.Category == Matched && d.State == ledger.StateSuccess {
			rr.MatchedSuccess.add(d.AmountPaise)
		}
		took := d.their == TheirSuccess || d.their == TheirPending
		switch {
		case d.Category == StatusMismatch && d.State == ledger.StateFailed && took:
			rr.FailedButCharged.add(d.AmountPaise)
			if a, ok := s.asked[d.Line]; ok {
				rc.failedCharged.add(a, d.AmountPaise)
			}
		case d.Category == StatusMismatch && d.State == ledger.StateSuccess && (d.their == TheirFailed || d.their == TheirRefunded):
			rr.SuccessNotKept.add(d.AmountPaise)
			if a, ok := s.asked[d.Line]; ok {
				rc.successNotKept.add(a, d.AmountPaise)
			}
		case d.Category == StatusMismatch && (d.State == ledger.StateQueued || d.State == ledger.StateHeld) && took:
			rr.ChargedNotSent.add(d.StatementAmountPaise)
			rc.queuedCharged++
		case d.Category == MissingInLedger && took:
			rr.ChargedNotSent.add(d.StatementAmountPaise)
		case d.Category == DuplicatedInStatement && d.again:
			rr.ExtraCharges.add(d.StatementAmountPaise)
			rr.NetToRecoverPaise += d.StatementAmountPaise
		case d.Category == AmountMismatch && d.their == TheirSuccess:
			rr.NetToRecoverPaise += d.StatementAmountPaise - d.AmountPaise
		}
		switch d.Category {
		case Matched, NotSent, FailedNotInStatement, InOtherBatch, CountedInOtherBatch:
		default:
			if listed[d.Category] < maxListedPerCategory {
				listed[d.Category]++
				s.Reconciliation.Discrepancies = append(s.Reconciliation.Discrepancies, *d)
			}
		}
		return nil
	})
	if err != nil {
		s.Reconciliation = Reconciliation{Discrepancies: []Discrepancy{}}
		return fmt.Errorf("reconcile batch %s: %w", s.Batch, err)
	}
	ct := &s.Reconciliation.ControlTotals
	ct.DifferencePaise = ct.StatementSuccessPaise - ct.LedgerSuccessPaise
	if rr.CountedInOtherBatch > 0 {
		rr.CountedIn = rc.countedIn
	}
	s.recon = rc
	s.Attention.Actions = s.actions()
	return nil
}

// Disputed are the rows and statement lines of a reconciled batch that do
// not agree (every category Mismatched counts), with the ledger row where
// there is one: what aopbatch reconcile asks the provider about. Every
// one, not the first 20 of each category.
type Disputed struct {
	Discrepancy
	Row *ledger.Row // nil for a statement line the batch does not hold
}

// Disputes lists the disagreements of a summary Reconcile has filled.
func (s *Summary) Disputes(ctx context.Context, l ledger.Reader) ([]Disputed, error) {
	if s.recon == nil {
		return nil, errors.New("disputes: not reconciled")
	}
	var out []Disputed
	err := s.walk(ctx, l, s.recon, func(r *ledger.Row, d *Discrepancy) error {
		if d.Category == DuplicatedInStatement && !d.again {
			return nil // a status of a payment compared above, not a second charge
		}
		switch d.Category {
		case AmountMismatch, StatusMismatch, MissingInStatement, MissingInLedger, DuplicatedInStatement:
			dd := Disputed{Discrepancy: *d}
			if r != nil {
				row := *r
				dd.Row = &row
			}
			out = append(out, dd)
		}
		return nil
	})
	return out, err
}

// walk classifies every row of the batch (in line order), then every
// statement entry no row of the batch holds (in statement order), calling fn
// for each, with the row when there is one. The first walk works out which entries other batches hold.
func (s *Summary) walk(ctx context.Context, l ledger.Reader, rc *reconState, fn func(*ledger.Row, *Discrepancy) error) error {
	st := rc.st
	seen := make([]bool, st.Len())
	rejectedAt := map[int]int{} // entry -> line of a rejected row of this batch with its refid
	err := l.EachRow(ctx, s.seq, func(r *ledger.Row) error {
		d := Discrepancy{
			Line: r.Line, ReferenceID: r.ReferenceID, State: r.State, AmountPaise: r.AmountPaise,
			ProviderTxnID: r.ProviderTxnID,
		}
		if r.State == ledger.StateRejected || r.State == ledger.StateConflict {
			// Never sent, and the referenceid is not theirs to hold: an
			// entry under it belongs to another row. A rejected row's own
			// referenceid on the statement (not one it repeats) means
			// someone else sent it.
			if r.State == ledger.StateRejected && r.ErrorCode != codeDuplicateRef && r.ReferenceID != "" {
				if pos, n := st.find(r.ReferenceID); n > 0 {
					i := int(st.rep[st.byRef[pos]])
					if _, dup := rejectedAt[i]; !dup {
						rejectedAt[i] = r.Line
					}
					// Any line under it counts, as in the export: failed
					// once and charged on a later attempt is charged.
					if e := st.chargedEntry(pos, n); e != nil {
						rc.rejectedCharged[r.Line] = fmt.Sprintf("the statement shows this referenceid %s (statement line %d): find out who sent it before sending it again",
							e.status, e.line)
					} else if e := st.shortEntry(pos, n); e != nil {
						rc.rejectedCharged[r.Line] = fmt.Sprintf("the statement has this referenceid on a line with cells missing (statement line %d), which may read shifted: find out who sent it before sending it again",
							e.line)
					}
				}
			}
			d.Category = NotSent
			return fn(r, &d)
		}
		pos, n := st.find(r.ReferenceID)
		if n == 0 {
			d.Category, d.Note = missing(r.State)
			s.noteAsked(&d)
			return fn(r, &d)
		}
		i := st.rep[st.byRef[pos]]
		e := &st.entries[i]
		seen[i] = true
		d.their, d.kept = e.status, st.kept[i]
		d.StatementLine = int(e.line)
		d.StatementStatus = e.status.String()
		d.StatementAmountPaise = e.amount
		d.StatementTxnID = st.str(e.txn)
		d.StatementOperatorRef = st.str(e.opref)
		ok, note := statusMatches(r.State, e.status)
		if ok && st.unsure[i] {
			ok, note = false, "the statement's lines for this referenceid leave unsure whether money was kept "+
				"(a charge and a refund no txnid ties together, or one transaction both charged and failed)"+asksProvider
		}
		if s := st.shortEntry(pos, n); ok && s != nil {
			// A value missing in the middle shifts the rest: its status may
			// be another column's.
			ok, note = false, fmt.Sprintf("the statement's line %d for this referenceid has cells missing, so its values may be under the wrong columns", s.line)+asksProvider
		}
		switch {
		case !ok:
			d.Category, d.Note = StatusMismatch, note
			if e.amount != r.AmountPaise {
				d.Note += fmt.Sprintf("; the amount differs too (statement %s)", rupees(e.amount))
			}
		case e.amount != r.AmountPaise:
			d.Category = AmountMismatch
			d.Note = fmt.Sprintf("ledger %s, statement %s", rupees(r.AmountPaise), rupees(e.amount))
		default:
			d.Category = Matched
		}
		if n > 1 {
			if d.Note != "" {
				d.Note += "; "
			}
			d.Note += fmt.Sprintf("refid is on the statement %d times", n)
		}
		s.noteAsked(&d)
		return fn(r, &d)
	})
	if err != nil {
		return err
	}
	if rc.other == nil {
		rc.other = make([]bool, st.Len())
		if err := s.findInOtherBatches(ctx, l, rc, seen); err != nil {
			return err
		}
	}
	for i := range st.entries {
		e := &st.entries[i]
		rep := int(st.rep[i])
		if rep == i && seen[i] {
			continue // compared with its row above
		}
		d := Discrepancy{
			ReferenceID: st.str(e.ref), StatementLine: int(e.line), StatementStatus: e.status.String(),
			StatementAmountPaise: e.amount, StatementTxnID: st.str(e.txn), StatementOperatorRef: st.str(e.opref), their: e.status,
			again: st.again[i], kept: st.kept[i],
		}
		// No batch of the ledger holds the referenceid: when this batch
		// is reconciled with others, the first of them counts the entry.
		held := seen[rep] || rc.other[rep]
		switch {
		case rep != i && rc.other[rep]:
			d.Category, d.Note = InOtherBatch, "another batch of this ledger holds this referenceid; repeats statement line "+st.entries[rep].lineText()
		case !held && rc.countedIn != "":
			d.Category, d.Note = CountedInOtherBatch, fmt.Sprintf("no row of the ledger has this referenceid: counted in the report of batch %s, reconciled with this one, not here", rc.countedIn)
			if rep != i {
				d.Note += "; repeats statement line " + st.entries[rep].lineText()
			}
			if line, ok := rejectedAt[rep]; ok {
				d.Note += fmt.Sprintf("; line %d of this batch has this referenceid but was rejected, never sent by aopbatch: find out who sent it before sending it again", line)
			}
		case rep != i && !st.again[i]:
			// Not money taken again: another status of the same payment
			// (pending, then charged; failed, then charged late; charged,
			// then refunded).
			d.Category, d.Note = DuplicatedInStatement, "another status of the payment on statement line "+st.entries[rep].lineText()+", not a second charge"
			if st.entries[i].status == st.entries[rep].status {
				// A line listed twice, not a history.
				d.Note = "the same transaction as statement line " + st.entries[rep].lineText() + ", listed again: not a second charge"
			}
		case rep != i:
			d.Category, d.Note = DuplicatedInStatement, "repeats statement line "+st.entries[rep].lineText()
		case rc.other[i]:
			d.Category, d.Note = InOtherBatch, "another batch of this ledger holds this referenceid"
		default:
			d.Category, d.Note = MissingInLedger, "no row of the ledger has this referenceid"
			if line, ok := rejectedAt[i]; ok {
				d.Note = fmt.Sprintf("line %d of this batch has this referenceid but was rejected, never sent by aopbatch: find out who sent it before sending it again", line)
			}
		}
		if !held && len(rc.sharedWith) > 0 {
			d.Note += fmt.Sprintf("; counted in this report only, not in that of %s, reconciled with this one", batchesText(rc.sharedWith))
		}
		if err := fn(nil, &d); err != nil {
			return err
		}
	}
	return nil
}

// asksProvider ends the note of a row only the provider can settle, until
// aopbatch reconcile has asked it (noteAsked).
const asksProvider = ": reconcile asks the provider"

// noteAsked adds to a disputed row's note what the provider answered
// aopbatch reconcile about it, in place of the advice to ask.
func (s *Summary) noteAsked(d *Discrepancy) {
	a, ok := s.asked[d.Line]
	if !ok || d.Category == Matched || d.Category == NotSent || d.Category == FailedNotInStatement {
		return
	}
	note := strings.Replace(d.Note, asksProvider, "", 1)
	if note != "" {
		note += "; "
	}
	d.Note = note + "aopbatch reconcile asked the provider: " + a.Why + "; " + a.recorded()
}

// findInOtherBatches marks the statement entries (each refid's rep, see
// Statement.payments, not seen in this batch) that a sendable row of
// another batch holds. It asks
// the ledger's referenceid index about those entries only: reading every
// other batch would cost a reconcile the whole ledger's history.
func (s *Summary) findInOtherBatches(ctx context.Context, l ledger.Reader, rc *reconState, seen []bool) error {
	st := rc.st
	var refs []string
	for i := range st.entries {
		if !seen[i] && st.rep[i] == int32(i) {
			if ref := st.str(st.entries[i].ref); ref != "" {
				refs = append(refs, ref)
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	holders, err := l.RefHolders(ctx, refs)
	if err != nil {
		return err
	}
	for i := range st.entries {
		if !seen[i] && st.rep[i] == int32(i) {
			if h, ok := holders[st.str(st.entries[i].ref)]; ok && h.Batch != s.seq {
				rc.other[i] = true
			}
		}
	}
	return nil
}

// batchesText names batches for a note: "batch B", "batches B, C".
func batchesText(ids []string) string {
	if len(ids) == 1 {
		return "batch " + ids[0]
	}
	return "batches " + strings.Join(ids, ", ")
}

// missing classifies a row the statement does not have.
func missing(s ledger.State) (Category, string) {
	switch s {
	case ledger.StateQueued, ledger.StateHeld:
		return NotSent, ""
	case ledger.StatePending, ledger.StateDuplicate, ledger.StateUnknown, ledger.StateInflight:
		return MissingInStatement, "unresolved here: run aopbatch resolve"
	case ledger.StateFailed:
		return FailedNotInStatement, ""
	}
	return MissingInStatement, ""
}

// statusMatches compares the ledger's state with the statement's outcome.
func statusMatches(s ledger.State, t TheirStatus) (bool, string) {
	switch s {
	case ledger.StateSuccess:
		if t == TheirSuccess {
			return true, ""
		}
	case ledger.StateRefunded, ledger.StateFailed:
		// "0" is "failed, or taken and returned"; either way no money kept.
		if t == TheirFailed || t == TheirRefunded {
			return true, ""
		}
	case ledger.StatePending:
		if t == TheirPending {
			return true, ""
		}
		return false, fmt.Sprintf("ledger pending, statement %s: unresolved here: run aopbatch resolve", t)
	case ledger.StateDuplicate, ledger.StateUnknown, ledger.StateInflight:
		return false, fmt.Sprintf("ledger %s, statement %s: unresolved here: run aopbatch resolve", s, t)
	case ledger.StateQueued, ledger.StateHeld:
		return false, fmt.Sprintf("ledger %s (never sent), statement %s: find out who sent it before sending it again", s, t)
	}
	return false, fmt.Sprintf("ledger %s, statement %s", s, t)
}
