package aoptest

import (
	"encoding/json"
	"math/big"
	"testing"
	"unicode/utf8"

	"github.com/aopbatch/aopbatch/ledger"
)

func TestParsePaise(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"10", 1000, false},
		{"10.5", 1050, false},
		{"10.50", 1050, false},
		{"10.500", 1050, false},
		{"0.01", 1, false},
		{".5", 50, false},
		{"0", 0, false},
		{"-10.25", -1025, false},
		{"1e2", 10000, false},
		{"1.5E-1", 15, false},
		{"1234567890123456.78", 123456789012345678, false},
		{"10.005", 0, true},
		{"1e-3", 0, true},
		{"10.", 0, true},
		{"", 0, true},
		{"-", 0, true},
		{"1,000", 0, true},
		{"ten", 0, true},
		{"1e", 0, true},
		{"1e99999", 0, true},
		{"99999999999999999999", 0, true},
		{"NaN", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePaise(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parsePaise(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFormatRupees(t *testing.T) {
	for paise, want := range map[int64]string{0: "0.00", 5: "0.05", 1000: "10.00", 1050: "10.50", -1025: "-10.25"} {
		if got := ledger.FormatRupees(paise); got != want {
			t.Errorf("ledger.FormatRupees(%d) = %q, want %q", paise, got, want)
		}
	}
}

// FuzzParsePaise checks parsePaise against math/big: whatever it accepts
// must be exactly paise/100 rupees, and it must round-trip.
func FuzzParsePaise(f *testing.F) {
	for _, s := range []string{"10", "10.5", "0.01", "1e2", "10.005", "-3.10", "1.5E-1", "00012.3400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePaise(s)
		if err != nil {
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("parsePaise(%q) = %d, but it is not a number", s, p)
		}
		if want := big.NewRat(p, 100); r.Cmp(want) != 0 {
			t.Fatalf("parsePaise(%q) = %d paise, want %s rupees", s, p, r.FloatString(4))
		}
		if back, err := parsePaise(ledger.FormatRupees(p)); err != nil || back != p {
			t.Fatalf("round trip of %d: %d, %v", p, back, err)
		}
	})
}

// FuzzCheckJWT feeds arbitrary tokens to the verifier: it must never panic
// and never accept a token it did not sign.
func FuzzCheckJWT(f *testing.F) {
	secret := []byte("k")
	f.Add(signJWT(secret, "HS256", map[string]any{"timestamp": 1740823200, "partnerId": "p", "reqid": "1"}))
	f.Add("a.b.c")
	f.Add("..")
	f.Add(signJWT(nil, "none", map[string]any{"timestamp": 1740823200, "partnerId": "p", "reqid": "1"}))
	f.Fuzz(func(t *testing.T, tok string) {
		cfg := DefaultConfig()
		cfg.Auth = AuthJWT
		cfg.JWTSecret = []byte("other")
		s := New(cfg)
		if code, _ := s.checkJWT(tok, newClock().Now()); code == 0 {
			t.Fatalf("accepted %q signed with another secret", tok)
		}
	})
}

// FuzzAppendJSONString checks the hand-built answer's string encoding
// against encoding/json: decoding it must give the input back.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "ref-1", `a"b\c`, "tab\there", "\x00\x1f", "line\u2028sep\u2029", "₹100", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // references reach the sandbox through a JSON decoder
		}
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Fatalf("appendJSONString(%q) = %s, decodes to %q, %v", s, b, got, err)
		}
	})
}
