package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

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
	// HeldElsewhere are conflict rows left out: the row of another batch
	// that holds their referenceid was paid, or may be (anything but failed
	// or refunded). The same payment under a new referenceid pays twice.
	HeldElsewhere     int64
	HeldElsewhereRefs []string // "REF (batch ID line N, success)", the first 20
}

const exportPage = 1000

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
	c := newCSV(w)
	if err := c.write(append([]string(nil), b.Header...)); err != nil {
		return res, err
	}
	rec := make([]string, len(b.Header))
	ids := map[int64]string{} // batch ids by seq, for heldElsewhere
	err := eachInState(ctx, l, b.Seq, st, func(r *ledger.Row) error {
		if o.Statement != nil && r.ReferenceID != "" && o.Statement.charged(r.ReferenceID) {
			res.Charged++
			if len(res.ChargedRefs) < 20 {
				res.ChargedRefs = append(res.ChargedRefs, r.ReferenceID)
			}
			return nil
		}
		if r.State == ledger.StateConflict {
			if paid, err := heldElsewhere(ctx, l, r.ReferenceID, ids); err != nil {
				return err
			} else if paid != "" {
				res.HeldElsewhere++
				if len(res.HeldElsewhereRefs) < 20 {
					res.HeldElsewhereRefs = append(res.HeldElsewhereRefs, r.ReferenceID+" ("+paid+")")
				}
				return nil
			}
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
		res.Rows++
		return c.write(rec)
	})
	if err != nil {
		return res, fmt.Errorf("export batch %s: %w", b.ID, err)
	}
	return res, c.flush()
}

// heldElsewhere names the row of another batch holding ref ("batch ID line
// N, success") when its payment happened or may yet happen, "" when it
// surely did not (failed, refunded) or no row holds ref any more. ids
// caches the batches' ids by seq.
func heldElsewhere(ctx context.Context, l ledger.Reader, ref string, ids map[int64]string) (string, error) {
	hs, err := l.RefHolders(ctx, []string{ref})
	if err != nil {
		return "", err
	}
	h, ok := hs[ref]
	if !ok {
		return "", nil
	}
	row, err := l.Row(ctx, h.Batch, h.Line)
	if err != nil {
		return "", err
	}
	if row.State == ledger.StateFailed || row.State == ledger.StateRefunded {
		return "", nil
	}
	if _, ok := ids[h.Batch]; !ok {
		bs, err := l.Batches(ctx)
		if err != nil {
			return "", err
		}
		for _, b := range bs {
			ids[b.Seq] = b.ID
		}
	}
	return fmt.Sprintf("batch %s line %d, %s", ids[h.Batch], h.Line, row.State), nil
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
