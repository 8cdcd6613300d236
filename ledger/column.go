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
