package batch

import (
	"errors"
	"math"
	"testing"
)

func TestParseRupees(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"10", 1000},
		{"10.5", 1050},
		{"10.05", 1005},
		{"0.50", 50},
		{"0.05", 5},
		{"0.5", 50},
		{"1", 100},
		{"1234.50", 123450},
		{" 10 ", 1000},
		{"\t10.25\t", 1025},
		{"010", 1000},
		{"9999999999", 999999999900},
		{"9999999999.99", 999999999999},
		{"00000000000001", 100}, // leading zeros are not size
	}
	for _, tc := range good {
		t.Run("good/"+tc.in, func(t *testing.T) {
			got, err := ParseRupees(tc.in)
			if err != nil {
				t.Fatalf("ParseRupees(%q) error: %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseRupees(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}

	bad := []struct {
		in   string
		want AmountError
	}{
		{"", ErrAmountEmpty},
		{"   ", ErrAmountEmpty},
		{"-5", ErrAmountSign},
		{"+5", ErrAmountSign},
		{"5-", ErrAmountSign},
		{"1e3", ErrAmountExponent},
		{"1.5E2", ErrAmountExponent},
		{"10,00", ErrAmountSeparator},
		{"1,000", ErrAmountSeparator},
		{"1_000", ErrAmountSeparator},
		{"1 000", ErrAmountSeparator},
		{"१००", ErrAmountNonASCIIDigits},
		{"1०", ErrAmountNonASCIIDigits},
		{"10.005", ErrAmountDecimals},
		{"0.001", ErrAmountDecimals},
		{"abc", ErrAmountNotNumber},
		{"e5", ErrAmountNotNumber},
		{"10abc", ErrAmountNotNumber},
		{"1.2.3", ErrAmountNotNumber},
		{"₹10", ErrAmountNotNumber},
		{"NaN", ErrAmountNotNumber},
		{"0x10", ErrAmountNotNumber},
		{".5", ErrAmountLeadingDigit},
		{".", ErrAmountLeadingDigit},
		{"10.", ErrAmountTrailingDigit},
		{"0", ErrAmountZero},
		{"0.00", ErrAmountZero},
		{"000.0", ErrAmountZero},
		{"99999999999999", ErrAmountTooLarge},
		{"10000000000", ErrAmountTooLarge},
		{"10\n", ErrAmountNotNumber},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			got, err := ParseRupees(tc.in)
			if err == nil {
				t.Fatalf("ParseRupees(%q) = %d, want error %q", tc.in, got, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("ParseRupees(%q) error = %q, want %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestFormatRupees(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{1000, "10.00"},
		{5, "0.05"},
		{50, "0.50"},
		{0, "0.00"},
		{123450, "1234.50"},
		{-300, "-3.00"},
		{-5, "-0.05"},
		{math.MaxInt64, "92233720368547758.07"},
		{math.MinInt64, "-92233720368547758.08"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := FormatRupees(tc.in); got != tc.want {
				t.Errorf("FormatRupees(%d) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRupeesRoundTrip(t *testing.T) {
	for _, in := range []string{"10", "10.5", "10.05", "0.50", "1234.50", "9999999999.99", "0.01"} {
		t.Run(in, func(t *testing.T) {
			paise, err := ParseRupees(in)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseRupees(FormatRupees(paise))
			if err != nil {
				t.Fatalf("ParseRupees(FormatRupees(%d)): %v", paise, err)
			}
			if back != paise {
				t.Errorf("round trip %q: %d -> %q -> %d", in, paise, FormatRupees(paise), back)
			}
		})
	}
}
