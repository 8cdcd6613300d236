package ledger

import "testing"

func TestFormatRupeesIndian(t *testing.T) {
	for in, want := range map[int64]string{
		0: "₹0.00", 5: "₹0.05", 100000: "₹1,000.00", 99999: "₹999.99", 10000000: "₹1,00,000.00",
		578760113: "₹57,87,601.13", 1000000000: "₹1,00,00,000.00", -300: "-₹3.00", -12345678: "-₹1,23,456.78",
	} {
		if got := FormatRupeesIndian(in); got != want {
			t.Errorf("FormatRupeesIndian(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseFormatRupeesRoundTrip(t *testing.T) {
	for _, in := range []string{"10", "10.5", "0.05", "57876.01", "9999999999.99"} {
		p, err := ParseRupees(in)
		if err != nil {
			t.Fatalf("ParseRupees(%q): %v", in, err)
		}
		back, err := ParseRupees(FormatRupees(p))
		if err != nil || back != p {
			t.Errorf("%q -> %d -> %q -> %d, %v", in, p, FormatRupees(p), back, err)
		}
	}
	if _, err := ParseRupees("1,000"); err != ErrAmountSeparator {
		t.Errorf("ParseRupees(1,000) = %v, want ErrAmountSeparator", err)
	}
}

func TestNormalizeColumn(t *testing.T) {
	for in, want := range map[string]string{
		"CA Number": "canumber", "CA\u00a0Number": "canumber", "\ufeffoperator": "operator",
		"bill_net-amount": "billnetamount", "User\u200bName": "username", "  Cell\u2003Number ": "cellnumber",
		"RegistrationID": "registrationid",
	} {
		if got := NormalizeColumn(in); got != want {
			t.Errorf("NormalizeColumn(%q) = %q, want %q", in, got, want)
		}
	}
}
