package ledger

import (
	"strings"
	"unicode"
)

// NormalizeColumn folds a CSV header cell to its canonical form: lowercase,
// with '_', '-', white space of any kind (Unicode included, so a no-break
// space) and zero-width characters (a byte order mark included) removed.
// It is the one normaliser: the input reader, the statement reader, the
// reports' masking of personal columns and export all match column names
// through it, so a column one of them recognises is never missed by
// another (SPEC section 3).
func NormalizeColumn(h string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c == '_' || c == '-' || unicode.IsSpace(c):
			return -1
		case c == '\u200B' || c == '\u200C' || c == '\u200D' || c == '\u2060' || c == '\uFEFF':
			return -1
		}
		return unicode.ToLower(c)
	}, h)
}

// SeparatorHint explains a header that is one cell because the file is not
// comma-separated, or has old Mac (CR only) line ends, or returns "" when
// neither. The input reader and the statement reader both use it, so a
// spreadsheet saved with semicolons is named the same way in either.
func SeparatorHint(header []string) string {
	for _, h := range header {
		if strings.Contains(h, "\r") {
			return "lines end with CR only: save the file with LF or CRLF line ends"
		}
	}
	if len(header) != 1 {
		return ""
	}
	switch h := header[0]; {
	case strings.Contains(h, ";"):
		return `columns must be separated by commas, not ";"`
	case strings.Contains(h, "\t"):
		return "columns must be separated by commas, not tabs"
	}
	return ""
}
