package batch

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row error codes: short, stable, machine-readable. They are stored in the
// ledger and written to rejects.csv, so they never change once released.
const (
	CodeFieldCount     = "field_count"     // the row has more or fewer cells than the header
	CodeMissingValue   = "missing_value"   // a required cell is empty
	CodeBadEncoding    = "bad_encoding"    // a cell is not valid UTF-8
	CodeBadOperator    = "bad_operator"    // operator is not a positive integer
	CodeBadCANumber    = "bad_canumber"    // canumber has control characters or is too long
	CodeBadAmount      = "bad_amount"      // amount is not rupees > 0 with at most 2 decimals
	CodeBadReferenceID = "bad_referenceid" // referenceid has characters outside [A-Za-z0-9_-./] or is too long
	// Other columns use "bad_" + the canonical column name, e.g. "bad_latitude",
	// "bad_minbillamount", "bad_acceptpayment".
)

// maxValueRunes bounds RowError.Value so a pasted megabyte never reaches a log.
const maxValueRunes = 40

// RowError is one invalid data row. The reader stays usable after it.
type RowError struct {
	Line   int      // physical line where the record starts (header = 1)
	Column string   // canonical column name, e.g. "amount"; "" for whole-row problems
	Value  string   // the offending cell, at most 40 characters; "" for personal data
	Code   string   // short machine code, e.g. "bad_amount"
	Reason string   // human text, e.g. "more than 2 decimals"
	Raw    []string // the record's cells as they were; nil when unknown
}

// WithLine prefixes a row's problem with its line, unless it names it
// already (a RowError's text does; the ledger's own reasons, such as a
// repeated referenceid, do not).
func WithLine(line int, msg string) string {
	if strings.HasPrefix(msg, "line ") {
		return msg
	}
	return "line " + strconv.Itoa(line) + ": " + msg
}

// Error renders the problem on one line, e.g.
// `line 7, column "amount", value "10.005": more than 2 decimals`.
func (e *RowError) Error() string {
	var b strings.Builder
	b.WriteString("line ")
	b.WriteString(strconv.Itoa(e.Line))
	if e.Column != "" {
		b.WriteString(", column ")
		b.WriteString(strconv.Quote(e.Column))
	}
	if e.Value != "" {
		b.WriteString(", value ")
		b.WriteString(strconv.Quote(e.Value))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Fixable reports whether editing the file can fix the row. Every row error
// is a problem in the file's text, so it always is; the method exists so
// callers need not know that.
func (e *RowError) Fixable() bool { return true }

// FileError means the file as a whole cannot be used: nothing in it is sent.
type FileError struct {
	Line   int    // physical line of the problem; 0 when it has none (an empty file)
	Column string // canonical column name when the problem is one column
	Reason string
}

// Error renders the problem on one line, e.g.
// `line 1: missing required column "amount"`.
func (e *FileError) Error() string {
	if e.Line <= 0 {
		return e.Reason
	}
	return "line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// clip makes a cell safe to echo: valid UTF-8 and at most maxValueRunes long.
func clip(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	n := 0
	for i := range s {
		if n == maxValueRunes {
			return s[:i]
		}
		n++
	}
	return s
}
