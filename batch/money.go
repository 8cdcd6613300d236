package batch

import "github.com/aopbatch/aopbatch/ledger"

// The money helpers live in the ledger's vocabulary (ledger/money.go), so
// the reports use the very same ones without importing batch. These names
// forward to them.

// AmountError is the reason an amount was refused by ParseRupees.
type AmountError = ledger.AmountError

// Reasons ParseRupees refuses an amount.
const (
	ErrAmountEmpty          = ledger.ErrAmountEmpty
	ErrAmountSign           = ledger.ErrAmountSign
	ErrAmountExponent       = ledger.ErrAmountExponent
	ErrAmountSeparator      = ledger.ErrAmountSeparator
	ErrAmountNonASCIIDigits = ledger.ErrAmountNonASCIIDigits
	ErrAmountNotNumber      = ledger.ErrAmountNotNumber
	ErrAmountLeadingDigit   = ledger.ErrAmountLeadingDigit
	ErrAmountTrailingDigit  = ledger.ErrAmountTrailingDigit
	ErrAmountDecimals       = ledger.ErrAmountDecimals
	ErrAmountZero           = ledger.ErrAmountZero
	ErrAmountTooLarge       = ledger.ErrAmountTooLarge
)

// ParseRupees converts rupees written as plain decimal text into integer
// paise; see ledger.ParseRupees.
func ParseRupees(s string) (int64, error) { return ledger.ParseRupees(s) }

// FormatRupees renders paise as rupees with exactly two decimals; see
// ledger.FormatRupees.
func FormatRupees(paise int64) string { return ledger.FormatRupees(paise) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
