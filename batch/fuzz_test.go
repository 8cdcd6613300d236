package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseRupees(f *testing.F) {
	for _, s := range []string{
		"10", "10.5", "10.05", "0.50", ".5", "10.", "-5", "+5", "1e3", "10,00",
		"1,000", "१००", "10.005", "abc", "0", "0.00", "99999999999999",
		"9999999999.99", " 10 ", "\t1\t", "", "00000000000001.01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		paise, err := ParseRupees(s)
		if err != nil {
			var ae AmountError
			if !errors.As(err, &ae) {
				t.Fatalf("ParseRupees(%q) error %v is not an AmountError", s, err)
			}
			return
		}
		if paise <= 0 {
			t.Fatalf("ParseRupees(%q) = %d, want > 0", s, paise)
		}
		text := FormatRupees(paise)
		back, err := ParseRupees(text)
		if err != nil || back != paise {
			t.Fatalf("round trip %q: %d -> %q -> %d, %v", s, paise, text, back, err)
		}
	})
}

func FuzzReader(f *testing.F) {
	matches, _ := filepath.Glob(filepath.Join("..", "testdata", "csv", "*.csv"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte("operator,canumber,amount\n311,CA1,10\n"), true)
	f.Add([]byte("operator,canumber,amount,referenceid\n311,\"CA\n1\",10,R1\n\n311,CA2,1e3,R2\n"), false)
	f.Add([]byte("\xef\xbb\xbfoperator,canumber,amount,referenceid,minbillamount\r\n311,CA1,10,R1,007\r\n"), false)
	f.Add([]byte("\xff\xfe\x00\x00"), false)
	f.Fuzz(func(t *testing.T, data []byte, lenient bool) {
		opts := ReaderOptions{MaxLineBytes: 256}
		if lenient {
			opts = ReaderOptions{AllowExtraColumns: true, GenerateRefs: true, BatchID: "fuzzbatch", RegistrationID: "AOP-1", Latitude: "28.6", Longitude: "77.2"}
		}
		r, err := NewReader(bytes.NewReader(data), opts)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("NewReader error %v is not a *FileError", err)
			}
			return
		}
		hdr := len(r.Header())
		// Every call consumes at least one line, so this bound is never hit
		// unless Next loops without progress.
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("Next did not finish after %d calls on %d bytes", i, len(data))
			}
			row, err := r.Next()
			if err == io.EOF {
				return
			}
			var re *RowError
			if errors.As(err, &re) {
				if re.Line < 2 {
					t.Fatalf("RowError line %d < 2: %v", re.Line, re)
				}
				if len(re.Value) > 4*maxValueRunes {
					t.Fatalf("RowError value too long: %q", re.Value)
				}
				continue
			}
			if err != nil {
				var fe *FileError
				if !errors.As(err, &fe) {
					t.Fatalf("Next error %v is neither *RowError nor *FileError", err)
				}
				return
			}
			if row.Line < 2 {
				t.Fatalf("row line %d < 2", row.Line)
			}
			if row.Request.AmountPaise <= 0 {
				t.Fatalf("line %d: AmountPaise %d", row.Line, row.Request.AmountPaise)
			}
			if row.Request.Operator <= 0 || row.Request.CANumber == "" || row.Request.ReferenceID == "" || row.Request.RegistrationID == "" {
				t.Fatalf("line %d: incomplete request %+v", row.Line, row.Request)
			}
			if len(row.Raw) != hdr {
				t.Fatalf("line %d: %d raw cells, header has %d", row.Line, len(row.Raw), hdr)
			}
			if _, err := json.Marshal(row.Request); err != nil {
				t.Fatalf("line %d: json: %v", row.Line, err)
			}
		}
	})
}
