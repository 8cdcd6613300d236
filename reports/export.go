package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aopbatch/aopbatch/ledger"
)

// ExportOptions tune Export.
type ExportOptions struct {
	// KeepRefs keeps the referenceid column; by default it is blank, so a
	// person chooses new referenceids (re-sending under the old one would
	// be answered "duplicate").
	KeepRefs bool
	// Statement, when given, leaves out every row whose referenceid it
	// shows charged or pending: such a row must never be offered for
	// sending again, whatever the ledger says (SPEC section 6).
	Statement *Statement
}

// ExportResult says what Export wrote.
type ExportResult struct {
	Rows        int64
	RefColumn   bool  // the batch's header has a referenceid column
	BlankedRefs bool  // and it was left blank
	Rebuilt     int64 // rows rebuilt from the recorded request (the rest from their cells)
	Charged     int64 // rows left out: the statement shows them charged or pending
	ChargedRefs []string
	// HeldElsewhere are conflict rows left out (see heldElsewhere): a row
	// of another batch holds their referenceid.
	HeldElsewhere     int64
	HeldElsewhereRefs []string // "REF (batch ID line N, success)", the first 20
	// Ragged are rejected rows left out because their cells do not fit
	// the header (rejects.csv has them in its reason column).
	Ragged int64
	// PaidLater are rows left out because a later batch of this ledger
	// holds the same operator, canumber and amount (see paidLater): most
	// likely this row, sent again already, paid there or offered by that
	// batch's own export.
	PaidLater     int64
	PaidLaterRefs []string // "line N: batch ID line M, success", the first 20
	// Repeated are rejected rows left out because they repeat the
	// referenceid of another line of the file (or of another batch's row),
	// whatever they were rejected for: each may be that line's payment a
	// second time, and under a new referenceid it would be paid twice
	// (rejects.csv marks those rejected as repeats fixable "review").
	Repeated int64
	// RetryColumn says the file names, in its retryof column, the row each
	// of its rows retries (see RetryOfColumn).
	RetryColumn bool
	// Retries are rows left out because they were refused for the row
	// they retry: another row retries it already, or it is not one to
	// pay again (see Export).
	Retries    int64
	RetryLines []string // "line N: reason", the first 20
}

// NewRefs reports whether the exported rows go out under new
// referenceids once run: theirs were blanked, or generated (no column).
func (r ExportResult) NewRefs() bool { return r.BlankedRefs || !r.RefColumn }

const exportPage = 1000

// codeDuplicateRef is the error code of a row rejected for repeating the
// referenceid of an earlier line of its file (the ledger's).
const codeDuplicateRef = "duplicate_referenceid"

// RetryOfColumn is the column an export of rows to pay again adds (or
// fills, when the batch's file had it): "BATCH:LINE", the row each retries.
// The ledger lets one sendable row retry a row, so a second file exported
// from the same rows, under other new referenceids, is refused rather
// than paid; and a retry is refused on a ledger that does not hold the
// row it retries, or where that row was found paid since.
const RetryOfColumn = ledger.RetryOfColumn

// HasRefColumn reports whether batch b's file had a referenceid column: a
// batch whose referenceids were all generated (--generate-refs) had none,
// and its export carries none either.
func HasRefColumn(b ledger.Batch) bool {
	for _, h := range b.Header {
		if normName(h) == "referenceid" {
			return true
		}
	}
	return false
}

// Export writes the rows of batch b in state st as an input CSV under the
// batch's own header, so they can be corrected and sent as a new batch.
// Cells come from the row as it was read when the ledger kept it (rejected
// and conflict rows), otherwise from the request body the ledger recorded.
// Cells are defused against formula injection like every CSV written here.
func Export(ctx context.Context, l ledger.Reader, b ledger.Batch, st ledger.State, w io.Writer, o ExportOptions) (ExportResult, error) {
	var res ExportResult
	if !st.Valid() {
		return res, fmt.Errorf("export: unknown state %q", st)
	}
	if len(b.Header) == 0 {
		return res, fmt.Errorf("export batch %s: the ledger has no header for it", b.ID)
	}
	refCol := -1
	names := make([]string, len(b.Header))
	for i, h := range b.Header {
		names[i] = normName(h)
		if names[i] == "referenceid" && refCol < 0 {
			refCol = i
		}
	}
	res.RefColumn = refCol >= 0
	res.BlankedRefs = res.RefColumn && !o.KeepRefs
	header := append([]string(nil), b.Header...)
	retryCol := -1
	if ledger.PaysAgain(st) { // payments to make again: a retry's rows
		res.RetryColumn = true
		for i, n := range names {
			if n == RetryOfColumn {
				retryCol = i // a retry's rows: the column is there
				break
			}
		}
		if retryCol < 0 {
			retryCol = len(header)
			header = append(header, RetryOfColumn)
		}
	}
	c := newCSV(w)
	if err := c.write(header); err != nil {
		return res, err
	}
	rec := make([]string, len(header))
	var held map[string]string
	// The rejected rows whose referenceid a sendable row holds: another
	// line of the file, or a row of another batch. One rejected for a
	// problem of its own (an amount with three decimals) is never checked
	// for a repeated referenceid, yet may be the holder's payment listed
	// twice, as much as one rejected as a repeat.
	var repeats map[string]ledger.RefHolder
	if st == ledger.StateRejected && res.BlankedRefs {
		var err error
		if _, repeats, err = refHolders(ctx, l, b.Seq, ledger.StateRejected); err != nil {
			return res, fmt.Errorf("export batch %s: %w", b.ID, err)
		}
	}
	if st == ledger.StateConflict {
		var err error
		if held, err = heldElsewhere(ctx, l, b.Seq); err != nil {
			return res, fmt.Errorf("export batch %s: %w", b.ID, err)
		}
	}
	// Rows that go out as new payments: their referenceids blanked, or
	// generated (no column). Kept, a row sent again is a conflict.
	var later map[int]heldLater
	if st != ledger.StateConflict && res.NewRefs() {
		var err error
		if later, err = paidLater(ctx, l, b, st); err != nil {
			return res, fmt.Errorf("export batch %s: %w", b.ID, err)
		}
	}
	walker := ledger.NewRetryWalker(l)
	// A row left out for the row it retries, with why ("line N: ...").
	retryLeftOut := func(why string) {
		res.Retries++
		if len(res.RetryLines) < 20 {
			res.RetryLines = append(res.RetryLines, why)
		}
	}
	err := eachInState(ctx, l, b.Seq, st, func(r *ledger.Row) error {
		if o.Statement != nil && r.ReferenceID != "" && o.Statement.charged(r.ReferenceID) {
			res.Charged++
			if len(res.ChargedRefs) < 20 {
				res.ChargedRefs = append(res.ChargedRefs, r.ReferenceID)
			}
			return nil
		}
		if ledger.RefusedForRetry(r.ErrorCode) {
			// Refused for the row it retries: another row retries that
			// one already, or it is not this ledger's, or was paid. Sent
			// from here as a retry of this row, it would pay it again.
			msg := r.Message
			if !strings.HasPrefix(msg, "line ") {
				msg = fmt.Sprintf("line %d: %s", r.Line, msg)
			}
			retryLeftOut(msg)
			return nil
		}
		if r.RetryOf != "" && retryCol >= 0 {
			// A retry that failed in turn pays the rows behind it too:
			// one found charged since (reconcile) must not be paid again.
			k, blocked, err := walker.Blocker(ctx, r.RetryOf)
			if err != nil {
				return err
			}
			if blocked {
				retryLeftOut(fmt.Sprintf("line %d: it retries batch %s line %d, %s", r.Line, k.BatchID, k.Line, linkState(k)))
				return nil
			}
		}
		if why, ok := held[r.ReferenceID]; ok {
			res.HeldElsewhere++
			if len(res.HeldElsewhereRefs) < 20 {
				res.HeldElsewhereRefs = append(res.HeldElsewhereRefs, r.ReferenceID+" ("+why+")")
			}
			return nil
		}
		if h, ok := later[r.Line]; ok {
			res.PaidLater++
			if len(res.PaidLaterRefs) < 20 {
				res.PaidLaterRefs = append(res.PaidLaterRefs, fmt.Sprintf("line %d: %s", r.Line, h.why))
			}
			return nil
		}
		if raggedRow(r, len(b.Header)) {
			// Which column each cell belongs to takes a person: written
			// under the header as they came, they could make a valid row
			// of the wrong payment. rejects.csv lists them.
			res.Ragged++
			return nil
		}
		if _, held := repeats[r.ReferenceID]; res.BlankedRefs && (r.ErrorCode == codeDuplicateRef || held) {
			// With its referenceid kept it is a conflict in a new file,
			// never sent; blanked, it goes out as a new payment. A row
			// rejected for a problem of its own is not marked a repeat,
			// yet may be one all the same.
			res.Repeated++
			return nil
		}
		if r.Raw != nil {
			for j := range rec {
				rec[j] = ""
				if j < len(r.Raw) {
					rec[j] = r.Raw[j]
				}
			}
		} else {
			cells, err := requestCells(r)
			if err != nil {
				return fmt.Errorf("line %d: %w", r.Line, err)
			}
			for j, n := range names {
				rec[j] = cells[n]
			}
			res.Rebuilt++
		}
		if res.BlankedRefs {
			rec[refCol] = ""
		}
		if retryCol >= 0 && (r.Raw == nil || retryCol == len(b.Header)) {
			// A row never sent (its cells kept) from a file with the
			// column keeps its cell: one that retried another still
			// retries that one. It held nothing, and a retry of it that
			// named it instead would leave that one free for another
			// export to pay again.
			rec[retryCol] = b.ID + ":" + strconv.Itoa(r.Line)
		}
		res.Rows++
		return c.write(rec)
	})
	if err != nil {
		return res, fmt.Errorf("export batch %s: %w", b.ID, err)
	}
	return res, c.flush()
}

// refHolders reads the referenceids of batch seq's rows in state st (the
// blank ones left out) and the sendable rows that hold them.
func refHolders(ctx context.Context, l ledger.Reader, seq int64, st ledger.State) ([]string, map[string]ledger.RefHolder, error) {
	var refs []string
	err := eachInState(ctx, l, seq, st, func(r *ledger.Row) error {
		if r.ReferenceID != "" {
			refs = append(refs, r.ReferenceID)
		}
		return nil
	})
	if err != nil || len(refs) == 0 {
		return refs, nil, err
	}
	holders, err := l.RefHolders(ctx, refs)
	return refs, holders, err
}

// heldElsewhere finds the conflict rows of batch seq an export leaves out,
// by referenceid, each with the row of another batch that holds its
// referenceid ("batch ID line N, success"): all of them. Held by a row paid
// or perhaps paid, a conflict is most likely that payment; held by a
// failed row, it may be the same payment (drift or not: an amount
// corrected in a new copy of the file is still that person), which that
// batch's own export --state failed offers, and offered from both it
// would be paid twice. Which it is takes a person.
//
// A conflict row was held by some row when it was recorded. Where no row
// of this ledger holds it now, the holder is elsewhere: read from an
// archive, the batch that paid it is in the live ledger or another
// archive; a ledger a copy put the batch in (ledger copy --batch) may not
// have the batch that held it. What became of it cannot be seen from
// here, so the row is left out as well. (A holder dropped unsent, with
// ledger drop, leaves its conflicts left out too: nothing records that it
// was never sent.)
func heldElsewhere(ctx context.Context, l ledger.Reader, seq int64) (map[string]string, error) {
	refs, holders, err := refHolders(ctx, l, seq, ledger.StateConflict)
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	bs, err := l.Batches(ctx)
	if err != nil {
		return nil, err
	}
	ids := make(map[int64]string, len(bs))
	for _, b := range bs {
		ids[b.Seq] = b.ID
	}
	out := map[string]string{}
	for _, ref := range refs {
		if _, ok := holders[ref]; !ok {
			out[ref] = "held when recorded by a batch not in this ledger now: look it up in the live ledger and the archives before sending it by hand"
		}
	}
	for ref, h := range holders {
		if h.Batch == seq {
			continue // not another batch's: nothing to leave out for
		}
		out[ref] = fmt.Sprintf("batch %s line %d, %s", ids[h.Batch], h.Line, h.State)
		if h.State == ledger.StateFailed || h.State == ledger.StateRefunded {
			out[ref] += fmt.Sprintf(": if the same payment, send it once, from export --state %s --batch %s", h.State, ids[h.Batch])
		}
	}
	return out, nil
}

// payee is what makes two rows the same payment but for the referenceid.
type payee struct {
	operator int64
	canumber string
	paise    int64
}

// paidLater finds the rows of batch b in states sts that a later batch of
// this ledger holds: one naming it in retryof, or one of the same
// operator, canumber and amount, in
// any state but conflict ("batch ID line N, success"), by line. A row
// exported for sending under a new referenceid and sent (a retry batch)
// stays failed, rejected or refunded here, and its batch's advice still
// says to export it: exported again from a file that differs at all
// (checked against a statement, corrected), it was paid a second time (a
// new user's walkthrough). The later row pays it, may pay it, or, failed,
// refunded or rejected itself, is offered by its own batch's export:
// offered from both, it would be paid twice, so only the latest batch
// offers it. (A conflict row is never sent, and its own export leaves it
// out while this row holds its referenceid.) Only later batches are read,
// whole: a retry comes after what it retries. An archived batch keeps no
// canumber and is not read.
func paidLater(ctx context.Context, l ledger.Reader, b ledger.Batch, sts ...ledger.State) (map[int]heldLater, error) {
	lines := map[payee][]int{}
	own := map[int]heldLater{} // every row of the states, by line: its amount and state
	for _, st := range sts {
		err := eachInState(ctx, l, b.Seq, st, func(r *ledger.Row) error {
			own[r.Line] = heldLater{paise: r.AmountPaise, state: r.State}
			if r.AmountPaise > 0 {
				k := payee{r.Operator, r.CANumber, r.AmountPaise}
				lines[k] = append(lines[k], r.Line)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(own) == 0 {
		return nil, nil
	}
	bs, err := l.Batches(ctx)
	if err != nil {
		return nil, err
	}
	// A row that pays or may pay is named before one that its batch's
	// export offers; among those, the latest batch's, the one whose export
	// offers it (every earlier one's has a later batch).
	got := map[int]heldLater{}
	for _, ob := range bs {
		if ob.Seq <= b.Seq || ob.Archived != "" {
			continue
		}
		// One pass over the batch, not a page query per state.
		err := l.EachRow(ctx, ob.Seq, func(r *ledger.Row) error {
			if r.State == ledger.StateConflict || ledger.RefusedForRetry(r.ErrorCode) {
				// Never sent, and a row refused for the row it retries
				// holds nothing: its export leaves it out.
				return nil
			}
			offered := r.State == ledger.StateFailed || r.State == ledger.StateRefunded || r.State == ledger.StateRejected
			same := lines[payee{r.Operator, r.CANumber, r.AmountPaise}]
			// A row that names one of these as the row it retries
			// (retryof) is that payment for certain, whatever its amount
			// (this one's may not have been readable).
			if id, line, ok := ledger.SplitRetryOf(r.RetryOf); ok && id == b.ID {
				if _, ok := own[line]; ok {
					same = append(same[:len(same):len(same)], line)
				}
			}
			for _, line := range same {
				if got[line].pays {
					continue
				}
				why := fmt.Sprintf("batch %s line %d, %s", ob.ID, r.Line, r.State)
				if offered {
					why += fmt.Sprintf(": if the same payment, send it once, from export --state %s --batch %s", r.State, ob.ID)
				}
				got[line] = heldLater{why: why, pays: !offered, paise: own[line].paise, state: own[line].state}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return got, nil
}

// heldLater is the row of a later batch that holds a row (paidLater).
type heldLater struct {
	why   string       // "batch ID line N, success"
	pays  bool         // it pays or may pay the row; else its batch's export offers it
	paise int64        // the amount, the row's own
	state ledger.State // the row's own state
}

// requestCells flattens the recorded request body into input cells by
// normalised column name: the top-level fields and those of bill_fetch.
func requestCells(r *ledger.Row) (map[string]string, error) {
	cells := map[string]string{}
	if len(r.Request) == 0 {
		return nil, errors.New("the ledger has neither the row's cells nor its request")
	}
	dec := json.NewDecoder(bytes.NewReader(r.Request))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("read recorded request: %w", err)
	}
	var flatten func(m map[string]any)
	flatten = func(m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				flatten(v)
			case string:
				cells[normName(k)] = v
			case json.Number:
				cells[normName(k)] = v.String()
			case bool:
				cells[normName(k)] = strconv.FormatBool(v)
			}
		}
	}
	flatten(body)
	if r.AmountPaise > 0 {
		cells["amount"] = rupees(r.AmountPaise)
	}
	return cells, nil
}

// linkState says what a row on the way back to a first payment is:
// "success now", or "not in this ledger".
func linkState(k ledger.RetryLink) string {
	if k.Missing != nil {
		return "not in this ledger"
	}
	return string(k.Row.State) + " now"
}
