package aoptest

import (
	"errors"
	"strconv"
	"strings"
)

var (
	errAmountSyntax   = errors.New("not a decimal number")
	errAmountFraction = errors.New("finer than one paisa")
	errAmountRange    = errors.New("out of range")
)

// parsePaise reads a decimal number of rupees ("10", "10.5", "10.50", "1e2",
// "10.500") as integer paise, exactly, never through a float. A value that is
// not a whole number of paise is an error, as is anything that would overflow.
func parsePaise(s string) (int64, error) {
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[start:i]
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
		if frac == "" {
			return 0, errAmountSyntax
		}
	}
	if intPart == "" && frac == "" {
		return 0, errAmountSyntax
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == es || i-es > 4 {
			return 0, errAmountSyntax
		}
		exp, _ = strconv.Atoi(s[es:i])
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return 0, errAmountSyntax
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return 0, nil
	}
	scale := exp - len(frac) + 2 // paise = digits × 10^scale
	if scale < 0 {
		cut := len(digits) + scale
		if cut <= 0 || strings.TrimRight(digits[cut:], "0") != "" {
			return 0, errAmountFraction
		}
		digits, scale = digits[:cut], 0
	}
	if len(digits)+scale > 18 {
		return 0, errAmountRange
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, errAmountRange
	}
	for ; scale > 0; scale-- {
		v *= 10
	}
	if neg {
		v = -v
	}
	return v, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
