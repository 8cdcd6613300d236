package reports

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/aopbatch/aopbatch/ledger"
)

// rupees renders paise as rupees with two decimals: 1050 -> "10.50".
func rupees(paise int64) string { return ledger.FormatRupees(paise) }

// maxStatementIntDigits keeps a statement amount far inside int64 paise.
const maxStatementIntDigits = 15

var (
	errAmountEmpty    = errors.New("empty amount")
	errAmountNotMoney = errors.New("not an amount in rupees (digits, an optional '.', up to 2 decimals)")
	errAmountFraction = errors.New("a fraction of a paisa")
	errAmountTooLarge = errors.New("amount too large")
)

// parseStatementRupees reads a statement's amount (rupees as text) into
// paise without a float. It is more lenient than the input reader, since a
// provider's export is not ours to fix: a sign, grouping commas in the
// integer part ("1,00,000.00") and trailing zero decimals ("10.000") are
// accepted; a non-zero fraction of a paisa is not.
func parseStatementRupees(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errAmountEmpty
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") || !grouped(intPart) {
		return 0, errAmountNotMoney
	}
	var paise int64
	digits := 0
	for i := 0; i < len(intPart); i++ {
		c := intPart[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 || c != '0' {
				digits++
			}
			if digits > maxStatementIntDigits {
				return 0, errAmountTooLarge
			}
			paise = paise*10 + int64(c-'0')
		case c == ',':
		default:
			return 0, errAmountNotMoney
		}
	}
	paise *= 100
	for i := 0; i < len(frac); i++ {
		c := frac[i]
		if c < '0' || c > '9' {
			return 0, errAmountNotMoney
		}
		switch i {
		case 0:
			paise += int64(c-'0') * 10
		case 1:
			paise += int64(c - '0')
		default:
			if c != '0' {
				return 0, errAmountFraction
			}
		}
	}
	if neg {
		paise = -paise
	}
	return paise, nil
}

// grouped accepts an integer part without commas, or with Indian or
// western digit grouping ("1,00,000", "100,000"): the last group has 3
// digits, the others 2 or 3. So "10,50" (a decimal comma) is refused rather
// than read as 1050 rupees.
func grouped(s string) bool {
	if !strings.Contains(s, ",") {
		return true
	}
	groups := strings.Split(s, ",")
	if len(groups[0]) == 0 || len(groups[0]) > 3 {
		return false
	}
	for i, g := range groups[1:] {
		last := i == len(groups)-2
		if (last && len(g) != 3) || (!last && len(g) != 2 && len(g) != 3) {
			return false
		}
	}
	return true
}

// safeCell defuses spreadsheet formula injection: a cell that a spreadsheet
// would evaluate gets a leading "'" and is shown as text. A plain number
// ("-1007.23") is left alone, so it can still be summed; aopbatch's reader
// takes the "'" off again (batch.unescapeFormula), so a file written to be
// fed back reads as the original.
func safeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		if plainNumber(s) {
			return s
		}
		return "'" + s
	}
	return s
}

// plainNumber reports whether s is -?digits[.digits].
func plainNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	return digitsOnly(whole) && (!dot || digitsOnly(frac))
}

func digitsOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// safeRecord applies safeCell to every cell of rec in place.
func safeRecord(rec []string) []string {
	for i, c := range rec {
		rec[i] = safeCell(c)
	}
	return rec
}

// maskTail keeps the last 4 characters of s and replaces the rest with X;
// a value of 4 characters or fewer is masked whole.
func maskTail(s string) string {
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return s
	}
	if n <= 4 {
		return strings.Repeat("X", n)
	}
	i := len(s)
	for k := 0; k < 4; k++ {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return strings.Repeat("X", n-4) + s[i:]
}

// normName is the ledger's one column-name normaliser, the input
// reader's own.
func normName(s string) string { return ledger.NormalizeColumn(s) }

// piiColumns are the (normalised) input columns --mask-pii masks.
var piiColumns = map[string]bool{"canumber": true, "cellnumber": true, "username": true}

// clip shortens s for an error message: valid UTF-8, at most 40 runes.
func clip(s string) string { return clipN(s, 40) }

// clipN is clip to max runes.
func clipN(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	n := 0
	for i := range s {
		if n == max {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// oneLine flattens s for a single-line text cell (markdown tables, terminal).
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}
