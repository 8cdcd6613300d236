package ledger

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Money is integer paise everywhere: the reader, the engine, the ledger and
// the reports share these helpers, so a rupee amount is read and written
// one way only. They live here, beside the row states, because every layer
// may import the ledger's vocabulary and none may import another layer.

// AmountError is the reason an amount was refused by ParseRupees. Its values
// are constants, so callers compare with errors.Is or ==.
type AmountError string

func (e AmountError) Error() string { return string(e) }

// Reasons ParseRupees refuses an amount.
const (
	ErrAmountEmpty          AmountError = "empty"
	ErrAmountSign           AmountError = "sign not allowed"
	ErrAmountExponent       AmountError = "exponent not allowed"
	ErrAmountSeparator      AmountError = "separator not allowed: plain digits and a '.' for decimals, e.g. 1000.50"
	ErrAmountNonASCIIDigits AmountError = "non-ASCII digits"
	ErrAmountNotNumber      AmountError = "not a number"
	ErrAmountLeadingDigit   AmountError = "needs a digit before the decimal point"
	ErrAmountTrailingDigit  AmountError = "needs a digit after the decimal point"
	ErrAmountDecimals       AmountError = "more than 2 decimals"
	ErrAmountZero           AmountError = "must be greater than zero"
	ErrAmountTooLarge       AmountError = "too large"
)

// maxRupeeDigits bounds the integer part: 10 digits of rupees is at most
// 10^12 paise, far inside int64, and far above any real recharge.
const maxRupeeDigits = 10

// ParseRupees converts rupees written as plain decimal text ("10", "10.5",
// "10.05") into integer paise. It never goes through a float. Surrounding
// ASCII spaces and tabs are ignored; anything else that is not an ASCII digit
// or a single decimal point followed by one or two digits is refused with an
// AmountError naming the reason.
func ParseRupees(s string) (int64, error) {
	s = trimSpaceTab(s)
	if s == "" {
		return 0, ErrAmountEmpty
	}
	if s[0] == '-' || s[0] == '+' {
		return 0, ErrAmountSign
	}
	intStart, intEnd := 0, 0
	fracStart, fracEnd := -1, -1
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intEnd = i
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracEnd = i
	}
	if i < len(s) {
		return 0, badAmountChar(s, i)
	}
	if intEnd == intStart {
		if fracStart < 0 {
			return 0, ErrAmountNotNumber
		}
		return 0, ErrAmountLeadingDigit
	}
	if fracStart >= 0 && fracEnd == fracStart {
		return 0, ErrAmountTrailingDigit
	}
	if fracStart >= 0 && fracEnd-fracStart > 2 {
		return 0, ErrAmountDecimals
	}
	// Leading zeros carry no value; only significant digits count as size.
	for intStart < intEnd-1 && s[intStart] == '0' {
		intStart++
	}
	if intEnd-intStart > maxRupeeDigits {
		return 0, ErrAmountTooLarge
	}
	var paise int64
	for j := intStart; j < intEnd; j++ {
		paise = paise*10 + int64(s[j]-'0')
	}
	paise *= 100
	if fracStart >= 0 {
		frac := int64(s[fracStart]-'0') * 10
		if fracEnd-fracStart == 2 {
			frac += int64(s[fracStart+1] - '0')
		}
		paise += frac
	}
	if paise == 0 {
		return 0, ErrAmountZero
	}
	return paise, nil
}

// badAmountChar explains why the byte at s[i] ends an otherwise numeric amount.
func badAmountChar(s string, i int) error {
	switch c := s[i]; c {
	case ',', '_', '\'', ' ', '\t':
		return ErrAmountSeparator
	case 'e', 'E':
		if i > 0 && isDigit(s[i-1]) {
			return ErrAmountExponent
		}
	case '-', '+':
		return ErrAmountSign
	}
	if r, _ := utf8.DecodeRuneInString(s[i:]); r >= utf8.RuneSelf && unicode.IsDigit(r) {
		return ErrAmountNonASCIIDigits
	}
	return ErrAmountNotNumber
}

// FormatRupees renders paise as rupees with exactly two decimals, for text
// files: 1000 -> "10.00", 5 -> "0.05", -300 -> "-3.00". No grouping, so a
// CSV cell stays a plain number a spreadsheet can sum.
func FormatRupees(paise int64) string {
	var buf [24]byte
	b := buf[:0]
	u := uint64(paise)
	if paise < 0 {
		b = append(b, '-')
		u = -u // two's complement: correct for math.MinInt64 too
	}
	b = strconv.AppendUint(b, u/100, 10)
	frac := u % 100
	b = append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
	return string(b)
}

// FormatRupeesIndian renders paise for people, as India writes money: the
// rupee sign and lakh/crore grouping, 578760113 -> "₹57,87,601.13",
// -300 -> "-₹3.00".
func FormatRupeesIndian(paise int64) string {
	plain := FormatRupees(paise)
	sign := ""
	if plain[0] == '-' {
		sign, plain = "-", plain[1:]
	}
	whole, frac := plain[:len(plain)-3], plain[len(plain)-3:]
	if len(whole) > 3 {
		head, tail := whole[:len(whole)-3], whole[len(whole)-3:]
		var b []byte
		for i := range len(head) {
			if i > 0 && (len(head)-i)%2 == 0 {
				b = append(b, ',')
			}
			b = append(b, head[i])
		}
		whole = string(b) + "," + tail
	}
	return sign + "₹" + whole + frac
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// trimSpaceTab removes surrounding ASCII spaces and tabs, and nothing else.
func trimSpaceTab(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
