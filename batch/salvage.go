package batch

import "strings"

// Salvaged is what was valid in a rejected row: its referenceid, operator,
// canumber and amount, each zero when that cell was itself bad or empty.
type Salvaged struct {
	ReferenceID string
	Operator    int64
	CANumber    string
	AmountPaise int64
	RetryOf     string // the row it retries, BATCH:LINE
}

// Salvage reads the cells of a rejected row (RowError.Raw, in header order)
// for the values that are valid on their own. A row refused for its
// userName still has a referenceid, an operator and an amount finance must
// see: the reports would otherwise show blanks and 0.00 for rupees that
// were never paid. The values are recorded only: a rejected row is never
// sent, and does not hold its referenceid.
//
// A row with more or fewer cells than the header (an unquoted "1,000")
// salvages nothing: which cell is which is unknown, and a guess put its
// amount in the control totals and "999.00" as its referenceid.
func (r *Reader) Salvage(raw []string) Salvaged {
	var s Salvaged
	if len(raw) != len(r.colOf) {
		return s
	}
	cell := func(c column) (string, bool) {
		for i, col := range r.colOf {
			if col == c && i < len(raw) {
				return raw[i], true
			}
		}
		return "", false
	}
	if v, ok := cell(colOperator); ok {
		if op, err := parseOperator(v); err == nil {
			s.Operator = op
		}
	}
	if v, ok := cell(colCANumber); ok {
		if ca, err := text(colCANumber, v, maxCANumberLen, true); err == nil {
			s.CANumber = ca
		}
	}
	if v, ok := cell(colAmount); ok {
		if p, err := parseAmount(v); err == nil {
			s.AmountPaise = p
		}
	}
	// A rejected retry still names the row it retries: export and the
	// reports follow it back to the first payment (ledger.RetryWalker).
	if v, ok := cell(colRetryOf); ok {
		if of, err := parseRetryOf(v, false); err == nil {
			s.RetryOf = of
		}
	}
	// A generated referenceid is not taken: the row keeps only what it
	// said itself.
	if v, ok := cell(colReferenceID); ok && strings.TrimSpace(v) != "" {
		if ref, err := r.referenceID(0, v); err == nil {
			s.ReferenceID = ref
		}
	}
	return s
}
