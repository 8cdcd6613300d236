package batch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// result is everything a file produced, in order.
type result struct {
	rows    []Row
	rejects []*RowError
	order   []int // line of every row and reject, in the order they came
}

func readFile(t *testing.T, name string, opts ReaderOptions) (result, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "csv", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, f, opts)
}

func readAll(t *testing.T, src io.Reader, opts ReaderOptions) (result, error) {
	t.Helper()
	var res result
	r, err := NewReader(src, opts)
	if err != nil {
		return res, err
	}
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("Next never returned io.EOF")
		}
		row, err := r.Next()
		var re *RowError
		switch {
		case err == io.EOF:
			return res, nil
		case errors.As(err, &re):
			res.rejects = append(res.rejects, re)
			res.order = append(res.order, re.Line)
		case err != nil:
			return res, err
		default:
			res.rows = append(res.rows, row)
			res.order = append(res.order, row.Line)
		}
	}
}

func mustRead(t *testing.T, name string, opts ReaderOptions) result {
	t.Helper()
	res, err := readFile(t, name, opts)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return res
}

func refs(rows []Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Request.ReferenceID)
	}
	return out
}

func lines(rows []Row) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.Line)
	}
	return out
}

var defaults = ReaderOptions{RegistrationID: "AOP-DEFAULT", Latitude: "28.7", Longitude: "77.1"}

func TestReaderGood(t *testing.T) {
	res := mustRead(t, "good.csv", defaults)
	if len(res.rejects) > 0 {
		t.Fatalf("unexpected rejects: %v", res.rejects)
	}
	if got, want := lines(res.rows), []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lines = %v, want %v", got, want)
	}
	wantPaise := []int64{1000, 1050, 19900, 50, 123450, 250005, 9999999, 100, 5000, 10000}
	for i, row := range res.rows {
		if got := row.Request.AmountPaise; got != wantPaise[i] {
			t.Errorf("line %d: AmountPaise = %d, want %d", row.Line, got, wantPaise[i])
		}
		if got, want := len(row.Raw), 16; got != want {
			t.Errorf("line %d: len(Raw) = %d, want %d", row.Line, got, want)
		}
	}
	withBill := map[int]bool{2: true, 7: true, 10: true, 11: true}
	for _, row := range res.rows {
		if got := row.Request.BillFetch != nil; got != withBill[row.Line] {
			t.Errorf("line %d: has bill_fetch = %v, want %v", row.Line, got, withBill[row.Line])
		}
	}

	r := res.rows[2].Request // line 4: own coordinates and RegistrationID
	if r.Operator != 12 || r.CANumber != "9876543210" || r.Latitude != "28.6139" || r.Longitude != "77.2090" || r.RegistrationID != "AOP-554" {
		t.Errorf("line 4 request = %+v", r)
	}
	r = res.rows[1].Request // line 3: defaults
	if r.Latitude != "28.7" || r.Longitude != "77.1" || r.RegistrationID != "AOP-DEFAULT" {
		t.Errorf("line 3 defaults = %+v", r)
	}
	bf := res.rows[5].Request.BillFetch // line 7
	if bf == nil || bf.MinBillAmount != "100" || bf.MaxBillAmount != "5000" ||
		bf.AcceptPayment == nil || !*bf.AcceptPayment || bf.AcceptPartPay == nil || *bf.AcceptPartPay {
		t.Errorf("line 7 bill_fetch = %+v", bf)
	}
	bf = res.rows[8].Request.BillFetch // line 10: only acceptPartPay=0
	if bf == nil || bf.AcceptPartPay == nil || *bf.AcceptPartPay || bf.AcceptPayment != nil {
		t.Errorf("line 10 bill_fetch = %+v", bf)
	}
}

func TestRowJSON(t *testing.T) {
	res := mustRead(t, "good.csv", defaults)
	tests := []struct {
		name string
		row  int
		want string
	}{
		{"bill fetch", 0, `{"operator":311,"canumber":"DL12CB4685","amount":10,"referenceid":"REF-0001",` +
			`"latitude":"99","longitude":"98","bill_fetch":{"billAmount":"1000.0","billnetamount":"1000.0",` +
			`"minBillAmount":1000,"dueDate":"2024-07-15","acceptPayment":true,"acceptPartPay":true,` +
			`"cellNumber":"DL12CB4685","userName":"NITESH KUMAR SHARMA"},"RegistrationID":"AOP-554"}`},
		{"defaults, no bill", 1, `{"operator":311,"canumber":"DL12CB4686","amount":10.50,"referenceid":"REF-0002",` +
			`"latitude":"28.7","longitude":"77.1","RegistrationID":"AOP-DEFAULT"}`},
		{"paise only", 3, `{"operator":12,"canumber":"9876543211","amount":0.50,"referenceid":"REF-0004",` +
			`"latitude":"28.7","longitude":"77.1","RegistrationID":"AOP-555"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(res.rows[tc.row].Request)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != tc.want {
				t.Errorf("json =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestReaderEncodings(t *testing.T) {
	for _, tc := range []struct{ file, prefix string }{{"bom.csv", "BOM"}, {"crlf.csv", "CRLF"}} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("..", "testdata", "csv", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(f, defaults)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := r.Header(), []string{"operator", "canumber", "amount", "referenceid"}; !reflect.DeepEqual(got, want) {
				t.Errorf("Header() = %q, want %q", got, want)
			}
			var rows []Row
			for {
				row, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, row)
			}
			if got, want := refs(rows), []string{tc.prefix + "-1", tc.prefix + "-2"}; !reflect.DeepEqual(got, want) {
				t.Errorf("refs = %q, want %q", got, want)
			}
			if got, want := lines(rows), []int{2, 3}; !reflect.DeepEqual(got, want) {
				t.Errorf("lines = %v, want %v", got, want)
			}
			if got, want := rows[1].Raw, []string{"311", "DL12CB4686", "20.25", tc.prefix + "-2"}; !reflect.DeepEqual(got, want) {
				t.Errorf("Raw = %q, want %q (no stray CR)", got, want)
			}
		})
	}
}

func TestReaderQuotedMultiline(t *testing.T) {
	res := mustRead(t, "quoted-multiline.csv", ReaderOptions{RegistrationID: "R", Latitude: "1", Longitude: "2", AllowExtraColumns: true})
	if got, want := lines(res.rows), []int{2, 4, 7, 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("row lines = %v, want %v", got, want)
	}
	if got, want := refs(res.rows), []string{"QM-1", "QM-2", "QM-4", "QM-5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("refs = %q, want %q", got, want)
	}
	if got, want := res.rows[0].Raw[4], "first\nnote"; got != want {
		t.Errorf("multi-line cell = %q, want %q", got, want)
	}
	if got, want := res.rows[1].Raw[4], `a "quoted" note`; got != want {
		t.Errorf("quoted cell = %q, want %q", got, want)
	}
	if len(res.rejects) != 1 {
		t.Fatalf("rejects = %v, want one", res.rejects)
	}
	re := res.rejects[0]
	if re.Line != 5 || re.Column != "canumber" || re.Code != CodeBadCANumber || re.Value != "" {
		t.Errorf("reject = %+v, want line 5 canumber bad_canumber with no value echoed", re)
	}
}

func TestReaderBadRows(t *testing.T) {
	res := mustRead(t, "bad-rows.csv", defaults)
	want := []struct {
		line         int
		column, code string
		value        string
		reason       string
	}{
		{2, "amount", CodeBadAmount, "10.005", "more than 2 decimals"},
		{3, "amount", CodeBadAmount, "-5", "sign not allowed"},
		{5, "amount", CodeBadAmount, "abc", "not a number"},
		{6, "canumber", CodeMissingValue, "", "missing value"},
		{7, "operator", CodeBadOperator, "x1", "must be digits only"},
		{9, "amount", CodeBadAmount, "1e3", "exponent not allowed"},
		{10, "referenceid", CodeBadReferenceID, "bad ref", "character ' ' not allowed (only A-Z a-z 0-9 _ - . /)"},
		{11, "amount", CodeBadAmount, "0", "must be greater than zero"},
	}
	if len(res.rejects) != len(want) {
		t.Fatalf("got %d rejects %v, want %d", len(res.rejects), res.rejects, len(want))
	}
	for i, w := range want {
		got := res.rejects[i]
		if got.Line != w.line || got.Column != w.column || got.Code != w.code || got.Value != w.value || got.Reason != w.reason {
			t.Errorf("reject %d = {%d %q %q %q %q}, want %+v", i, got.Line, got.Column, got.Code, got.Value, got.Reason, w)
		}
		if !got.Fixable() {
			t.Errorf("reject %d not fixable", i)
		}
	}
	if got, want := res.rejects[0].Error(), `line 2, column "amount", value "10.005": more than 2 decimals`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := res.rejects[0].Raw, []string{"311", "DL12CB4685", "10.005", "BAD-1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Raw = %q, want %q", got, want)
	}
	if got, want := refs(res.rows), []string{"GOOD-1", "GOOD-2", "GOOD-3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("good rows = %q, want %q", got, want)
	}
	if got, want := res.order, []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestReaderRagged(t *testing.T) {
	res := mustRead(t, "ragged.csv", defaults)
	if got, want := refs(res.rows), []string{"RG-1", "RG-4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("good rows = %q, want %q", got, want)
	}
	if len(res.rejects) != 2 {
		t.Fatalf("rejects = %v, want 2", res.rejects)
	}
	for i, line := range []int{3, 4} {
		re := res.rejects[i]
		if re.Line != line || re.Code != CodeFieldCount || re.Column != "" {
			t.Errorf("reject %d = %+v, want line %d field_count", i, re, line)
		}
	}
	// Their cells are kept, however many: a person sees what to fix.
	for i, want := range [][]string{{"311", "DL12CB4686", "20"}, {"311", "DL12CB4687", "30", "RG-3", "extra"}} {
		if got := res.rejects[i].Raw; !reflect.DeepEqual(got, want) {
			t.Errorf("reject %d cells %q, want %q", i, got, want)
		}
	}
}

// A ragged row far into a large file, a quoted multi-line cell in it:
// its cells are still kept (the reader lets go of the bytes behind it).
func TestReaderRaggedFarIn(t *testing.T) {
	var b strings.Builder
	b.WriteString("operator,canumber,amount,referenceid\n")
	for i := range 40000 {
		fmt.Fprintf(&b, "311,CA%d,10,FAR-%d\n", i, i)
	}
	b.WriteString("311,\"CA\nX\",1,000,FAR-X\n311,CAY,10,FAR-Y\n")
	r, err := NewReader(strings.NewReader(b.String()), defaults)
	if err != nil {
		t.Fatal(err)
	}
	var re *RowError
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.As(err, &re) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if re == nil {
		t.Fatal("no ragged row found")
	}
	if want := []string{"311", "CA\nX", "1", "000", "FAR-X"}; re.Line != 40002 || !reflect.DeepEqual(re.Raw, want) {
		t.Errorf("ragged row line %d cells %q, want line 40002 %q", re.Line, re.Raw, want)
	}
	if n := len(r.src.raw); n > 256<<10 {
		t.Errorf("the reader keeps %d bytes of a %d-byte file", n, b.Len())
	}
}

func TestReaderExtraColumn(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		_, err := readFile(t, "extra-column.csv", defaults)
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v, want *FileError", err)
		}
		if fe.Line != 1 || !strings.Contains(fe.Reason, `unknown column "customer_note"`) {
			t.Errorf("err = %v", fe)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		opts := defaults
		opts.AllowExtraColumns = true
		res := mustRead(t, "extra-column.csv", opts)
		if len(res.rows) != 2 || len(res.rejects) != 0 {
			t.Fatalf("rows %d rejects %v, want 2 rows", len(res.rows), res.rejects)
		}
		if got, want := res.rows[1].Raw, []string{"311", "DL12CB4686", "20", "EX-2", "second, with comma", "x"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Raw = %q, want %q", got, want)
		}
	})
}

func TestReaderHeaderVariants(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "testdata", "csv", "header-variants.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f, ReaderOptions{Latitude: "1", Longitude: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Header()[1], " CA Number "; got != want {
		t.Errorf("Header()[1] = %q, want %q (as in the file)", got, want)
	}
	row, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	req := row.Request
	if req.Operator != 311 || req.CANumber != "DL12CB4685" || req.AmountPaise != 1000 || req.ReferenceID != "HV-1" || req.RegistrationID != "AOP-9" {
		t.Errorf("request = %+v", req)
	}
	bf := req.BillFetch
	if bf == nil || bf.BillNetAmount != "1000.0" || bf.MinBillAmount != "100" || bf.AcceptPayment == nil || !*bf.AcceptPayment || bf.DueDate != "2024-07-15" {
		t.Errorf("bill_fetch = %+v", bf)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("second Next = %v, want io.EOF", err)
	}
}

func TestReaderFileErrors(t *testing.T) {
	const hdr = "operator,canumber,amount,referenceid\n"
	tests := []struct {
		name       string
		in         string
		opts       ReaderOptions
		goodBefore int // rows returned before the file error
		line       int
		column     string
		reason     string // substring
	}{
		{name: "empty", in: "", reason: "empty file"},
		{name: "blank lines only", in: "\n\r\n\n", reason: "empty file"},
		{name: "missing amount", in: "operator,canumber,referenceid\n", line: 1, column: "amount", reason: `missing required column "amount"`},
		{name: "missing several", in: "canumber,referenceid\n", line: 1, column: "operator", reason: `missing required columns "operator", "amount"`},
		{name: "missing referenceid", in: "operator,canumber,amount\n", line: 1, column: "referenceid", reason: `missing required column "referenceid"`},
		{name: "duplicate", in: "operator,canumber,amount,referenceid,Amount\n", line: 1, column: "amount", reason: `duplicate column "amount" (columns 3 and 5)`},
		{name: "duplicate variant", in: "operator,canumber,amount,reference_id,Reference-ID\n", line: 1, column: "referenceid", reason: "duplicate column"},
		{name: "unnamed column", in: "operator,canumber,amount,referenceid,\n", line: 1, reason: "column 5 has no name"},
		{name: "amount under its own name", in: "operator,canumber,Amount (Rs),referenceid\n", line: 1, column: "amount", reason: `missing required column "amount"; the header has unknown column "Amount (Rs)": if it holds the amount, name it "amount"`},
		{name: "two missing, two unknown", in: "Op,canumber,Amt,referenceid\n", line: 1, column: "operator", reason: `missing required columns "operator", "amount"; the header has unknown column "Op", unknown column "Amt": name the ones that hold them "operator", "amount"`},
		{name: "referenceid column missing", in: "operator,canumber,amount\n", line: 1, column: "referenceid", reason: `missing required column "referenceid" (a file without referenceids goes with --generate-refs --batch ID)`},
		{name: "two unknown", in: "operator,canumber,amount,referenceid,note,memo\n", line: 1, reason: `unknown column "note" and 1 more (remove it, or use --allow-extra-columns)`},
		{name: "semicolons", in: "operator;canumber;amount;referenceid\n311;CA1;10;R1\n", line: 1, reason: `separated by commas, not ";"`},
		{name: "tabs", in: "operator\tcanumber\tamount\treferenceid\n", line: 1, reason: "not tabs"},
		{name: "CR line ends", in: "operator,canumber,amount,referenceid\r311,CA1,10,R1\r", line: 1, reason: "CR only"},
		{name: "no registration id", in: hdr, opts: ReaderOptions{}, line: 1, column: "registrationid", reason: "RegistrationID missing"},
		{name: "NUL in header", in: "operator,can\x00umber,amount,referenceid\n", line: 1, reason: "not a UTF-8 text CSV"},
		{name: "NUL in data", in: hdr + "311,CA1,10,R1\n311,CA\x002,10,R2\n", goodBefore: 1, line: 3, reason: "not a UTF-8 text CSV"},
		{name: "UTF-16 LE BOM", in: "\xff\xfeo\x00p\x00", line: 1, reason: "not a UTF-8 text CSV"},
		{name: "UTF-16 BE BOM", in: "\xfe\xff\x00o\x00p", line: 1, reason: "not a UTF-8 text CSV"},
		{name: "invalid UTF-8 header", in: "operator,canumber,amount,referenceid,\xe9t\xe9\n", line: 1, reason: "not a UTF-8 text CSV"},
		{name: "bare quote", in: hdr + "311,CA1,10,R1\n311,CA\"2,10,R2\n311,CA3,10,R3\n", goodBefore: 1, line: 3, reason: `a " in a cell that is not quoted`},
		{name: "bad quote", in: hdr + "311,\"CA1\"x,10,R1\n", line: 2, reason: "not closed properly"},
		{name: "unclosed quote", in: hdr + "311,CA1,10,R1\n311,\"CA2,10,R2\n311,CA3,10,R3\n", goodBefore: 1, line: 3, reason: "not closed properly (a \" inside a quoted cell must be doubled) (noticed at line 4)"},
		{name: "long line", in: hdr + "311,CA1,10,R1\n311,CA2,10," + strings.Repeat("x", 200) + "\n", opts: ReaderOptions{RegistrationID: "R", Latitude: "1", Longitude: "2", MaxLineBytes: 100}, goodBefore: 1, line: 3, reason: "line longer than 100 bytes"},
		{name: "long record", in: hdr + "311,\"" + strings.Repeat("CA\n", 50) + "\",10,R1\n", opts: ReaderOptions{RegistrationID: "R", Latitude: "1", Longitude: "2", MaxLineBytes: 100}, line: 2, reason: "row longer than 100 bytes"},
		{name: "long header", in: strings.Repeat("x", 101) + "\n", opts: ReaderOptions{RegistrationID: "R", Latitude: "1", Longitude: "2", MaxLineBytes: 100}, line: 1, reason: "line longer than 100 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if reflect.DeepEqual(opts, ReaderOptions{}) && tc.name != "no registration id" {
				opts = defaults
			}
			res, err := readAll(t, strings.NewReader(tc.in), opts)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FileError", err)
			}
			if fe.Line != tc.line || fe.Column != tc.column || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("FileError = {Line %d Column %q Reason %q}, want {%d %q ~%q}", fe.Line, fe.Column, fe.Reason, tc.line, tc.column, tc.reason)
			}
			if len(res.rows) != tc.goodBefore || len(res.rejects) != 0 {
				t.Errorf("before the error: %d rows %v rejects, want %d rows", len(res.rows), res.rejects, tc.goodBefore)
			}
		})
	}
}

func TestFileErrorText(t *testing.T) {
	_, err := readFile(t, "missing-amount.csv", defaults)
	if got, want := err.Error(), `line 1: missing required column "amount"`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&FileError{Reason: "empty file: no header row"}).Error(), "empty file: no header row"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestReaderFileErrorSticky checks a broken file stays broken: no row after a
// quoting error is ever returned.
func TestReaderFileErrorSticky(t *testing.T) {
	in := "operator,canumber,amount,referenceid\n311,CA\"1,10,R1\n311,CA2,10,R2\n"
	r, err := NewReader(strings.NewReader(in), defaults)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var fe *FileError
		if _, err := r.Next(); !errors.As(err, &fe) {
			t.Fatalf("call %d: err = %v, want *FileError", i, err)
		}
	}
}

// endless is a reader of one never-ending line.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += len(p)
	return len(p), nil
}

func TestReaderHugeLineNotBuffered(t *testing.T) {
	src := &endless{}
	in := io.MultiReader(strings.NewReader("operator,canumber,amount,referenceid\n311,CA1,10,"), src)
	_, err := readAll(t, in, defaults)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Line != 2 {
		t.Fatalf("err = %v, want *FileError on line 2", err)
	}
	if src.n > 4*DefaultMaxLineBytes {
		t.Errorf("read %d bytes of the long line, want about %d", src.n, DefaultMaxLineBytes)
	}
}

func TestReaderRowErrors(t *testing.T) {
	const hdr = "operator,canumber,amount,referenceid,registrationid,latitude,longitude,billamount,billnetamount,minbillamount,maxbillamount,duedate,acceptpayment,acceptpartpay,cellnumber,username\n"
	good := []string{"311", "CA1", "10", "R1", "", "", "", "", "", "", "", "", "", "", "", ""}
	tests := []struct {
		name         string
		col          int
		cell         string
		code, column string
		value        string // "" = not echoed
		reason       string
	}{
		{"operator zero", 0, "0", CodeBadOperator, "operator", "0", "must be greater than zero"},
		{"operator huge", 0, "1234567890123456789", CodeBadOperator, "operator", "1234567890123456789", "too large"},
		{"operator sign", 0, "-311", CodeBadOperator, "operator", "-311", "must be digits only"},
		{"operator empty", 0, " ", CodeMissingValue, "operator", "", "missing value"},
		{"canumber control", 1, "CA\x01", CodeBadCANumber, "canumber", "", "control character not allowed"},
		{"canumber long", 1, strings.Repeat("9", 65), CodeBadCANumber, "canumber", "", "longer than 64 characters"},
		{"canumber not utf8", 1, "CA\xff", CodeBadEncoding, "canumber", "", "not valid UTF-8"},
		{"amount empty", 2, "", CodeMissingValue, "amount", "", "missing value"},
		{"amount not utf8", 2, "1\xff", CodeBadEncoding, "amount", "1\uFFFD", "not valid UTF-8"},
		{"amount clipped", 2, strings.Repeat("a", 100), CodeBadAmount, "amount", strings.Repeat("a", 40), "not a number"},
		{"ref missing", 3, "", CodeMissingValue, "referenceid", "", "missing value"},
		{"ref long", 3, strings.Repeat("r", 65), CodeBadReferenceID, "referenceid", strings.Repeat("r", 40), "longer than 64 characters"},
		{"ref hash", 3, "ref#1", CodeBadReferenceID, "referenceid", "ref#1", "character '#' not allowed (only A-Z a-z 0-9 _ - . /)"},
		{"ref unicode", 3, "réf", CodeBadReferenceID, "referenceid", "réf", "character 'é' not allowed (only A-Z a-z 0-9 _ - . /)"},
		{"registrationid control", 4, "AOP\x7f", "bad_registrationid", "registrationid", "AOP\x7f", "control character not allowed"},
		{"latitude", 5, "north", "bad_latitude", "latitude", "north", "must be a decimal number"},
		{"longitude", 6, "1.", "bad_longitude", "longitude", "1.", "must be a decimal number"},
		{"billamount", 7, "1,000", "bad_billamount", "billamount", "1,000", `must be a decimal number, e.g. "1000.0"`},
		{"billnetamount", 8, "-1", "bad_billnetamount", "billnetamount", "-1", `must be a decimal number, e.g. "1000.0"`},
		{"minbillamount", 9, "1e3", "bad_minbillamount", "minbillamount", "1e3", `must be a decimal number, e.g. "1000.0"`},
		{"maxbillamount", 10, ".5", "bad_maxbillamount", "maxbillamount", ".5", `must be a decimal number, e.g. "1000.0"`},
		{"duedate", 11, "2024\n07", "bad_duedate", "duedate", "2024\n07", "control character not allowed"},
		{"acceptpayment", 12, "maybe", "bad_acceptpayment", "acceptpayment", "maybe", "must be true/false, 1/0 or yes/no"},
		{"acceptpartpay", 13, "2", "bad_acceptpartpay", "acceptpartpay", "2", "must be true/false, 1/0 or yes/no"},
		{"cellnumber", 14, strings.Repeat("9", 65), "bad_cellnumber", "cellnumber", "", "longer than 64 characters"},
		{"username", 15, "A\tB", "bad_username", "username", "", "control character not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cells := append([]string(nil), good...)
			cells[tc.col] = tc.cell
			var b strings.Builder
			b.WriteString(hdr)
			for i, c := range cells {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(`"` + strings.ReplaceAll(c, `"`, `""`) + `"`)
			}
			b.WriteString("\n")
			res, err := readAll(t, strings.NewReader(b.String()), defaults)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.rejects) != 1 {
				t.Fatalf("rows %+v rejects %v, want one reject", res.rows, res.rejects)
			}
			got := res.rejects[0]
			if got.Line != 2 || got.Code != tc.code || got.Column != tc.column || got.Value != tc.value || got.Reason != tc.reason {
				t.Errorf("reject = {%d %q %q %q %q}, want {2 %q %q %q %q}", got.Line, got.Code, got.Column, got.Value, got.Reason,
					tc.code, tc.column, tc.value, tc.reason)
			}
			if !reflect.DeepEqual(got.Raw, cells) {
				t.Errorf("Raw = %q, want %q", got.Raw, cells)
			}
		})
	}
}

func TestReaderRegistrationIDCellEmpty(t *testing.T) {
	in := "operator,canumber,amount,referenceid,RegistrationID\n311,CA1,10,R1,AOP-1\n311,CA2,10,R2,\n"
	res, err := readAll(t, strings.NewReader(in), ReaderOptions{Latitude: "1", Longitude: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.rows) != 1 || res.rows[0].Request.RegistrationID != "AOP-1" {
		t.Errorf("rows = %+v", res.rows)
	}
	if len(res.rejects) != 1 || res.rejects[0].Line != 3 || res.rejects[0].Code != CodeMissingValue || res.rejects[0].Column != "registrationid" {
		t.Errorf("rejects = %v", res.rejects)
	}
}

func TestReaderGenerateRefs(t *testing.T) {
	opts := ReaderOptions{GenerateRefs: true, BatchID: "b3f9a1c07b2e4d5f", RegistrationID: "R", Latitude: "1", Longitude: "2"}
	t.Run("no column", func(t *testing.T) {
		res, err := readAll(t, strings.NewReader("operator,canumber,amount\n311,CA1,10\n\n311,CA2,20\n"), opts)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := refs(res.rows), []string{"1165403ec83b00000002", "1165403ec83b00000004"}; !reflect.DeepEqual(got, want) {
			t.Errorf("refs = %q, want %q", got, want)
		}
	})
	t.Run("column wins when set", func(t *testing.T) {
		res, err := readAll(t, strings.NewReader("operator,canumber,amount,referenceid\n311,CA1,10,MINE\n311,CA2,20,\n"), opts)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := refs(res.rows), []string{"MINE", "1165403ec83b00000003"}; !reflect.DeepEqual(got, want) {
			t.Errorf("refs = %q, want %q", got, want)
		}
	})
	// Any id works, and ids that share a long prefix get apart referenceids.
	for id, want := range map[string]string{"b1": "7dc96f776c84", "batch 1": "e8dd3d6efcbc", "बैच": "aeb5437bf43a",
		"nightly-2026-06-01": "d216b365f96e", "nightly-2026-06-02": "9a4491c7678f"} {
		t.Run("batch id "+id, func(t *testing.T) {
			o := opts
			o.BatchID = id
			res, err := readAll(t, strings.NewReader("operator,canumber,amount\n311,CA1,10\n"), o)
			if err != nil {
				t.Fatal(err)
			}
			if got := refs(res.rows); !reflect.DeepEqual(got, []string{want + "00000002"}) {
				t.Errorf("refs = %q, want %q", got, want+"00000002")
			}
		})
	}
	t.Run("empty batch id", func(t *testing.T) {
		o := opts
		o.BatchID = ""
		_, err := NewReader(strings.NewReader("operator,canumber,amount\n"), o)
		var fe *FileError
		if err == nil || errors.As(err, &fe) {
			t.Errorf("err = %v, want a plain option error", err)
		}
	})
}

func TestReaderHeaderOnly(t *testing.T) {
	res, err := readAll(t, strings.NewReader("operator,canumber,amount,referenceid\r\n"), defaults)
	if err != nil || len(res.rows)+len(res.rejects) != 0 {
		t.Errorf("rows %v rejects %v err %v, want nothing", res.rows, res.rejects, err)
	}
}

func TestHeaderNormalization(t *testing.T) {
	for in, want := range map[string]string{
		"Bill_Net_Amount":  "billnetamount",
		"bill-net-amount":  "billnetamount",
		"billnetamount":    "billnetamount",
		"RegistrationID":   "registrationid",
		"registration_id":  "registrationid",
		" CA Number ":      "canumber",
		"\u00a0amount\t":   "amount",
		"amount\u200b":     "amount",
		"Reference-ID":     "referenceid",
		"":                 "",
		"customer_note":    "customernote",
		"ACCEPT PART-PAY_": "acceptpartpay",
	} {
		if got := normalizeHeader(in); got != want {
			t.Errorf("normalizeHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	const rows = 100_000
	var sb strings.Builder
	sb.WriteString("operator,canumber,amount,referenceid,latitude,longitude,billamount,acceptpayment\n")
	for i := 0; i < rows; i++ {
		sb.WriteString("311,DL12CB")
		sb.WriteString(strings.Repeat("4", 1+i%5))
		sb.WriteString(",199.50,REF-")
		sb.WriteString(strings.Repeat("7", 1+i%7))
		if i%10 == 0 {
			sb.WriteString(",28.61,77.20,1000.0,true\n")
		} else {
			sb.WriteString(",,,,\n")
		}
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := NewReader(strings.NewReader(data), ReaderOptions{RegistrationID: "AOP-1"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != rows {
			b.Fatalf("read %d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
}

// TestReaderSkipsSeparatorOnlyLines: a line of nothing but commas (what a
// spreadsheet leaves below the data) is an empty line, not a data row, in
// either line ending, with as many commas as the header or fewer, and as
// the file's last line without a line end.
func TestReaderSkipsSeparatorOnlyLines(t *testing.T) {
	head := "operator,canumber,amount,referenceid"
	for _, tc := range []struct {
		name string
		body string
	}{
		{"LF trailing", head + "\n311,CA1,10,R1\n311,CA2,20,R2\n,,,\n,,,\n"},
		{"CRLF trailing", head + "\r\n311,CA1,10,R1\r\n311,CA2,20,R2\r\n,,,\r\n,,,\r\n"},
		{"between rows", head + "\n311,CA1,10,R1\n,,,\n\n,,,\n311,CA2,20,R2\n"},
		{"fewer commas", head + "\r\n311,CA1,10,R1\r\n,,\r\n,\r\n311,CA2,20,R2\r\n"},
		{"last line without line end", head + "\n311,CA1,10,R1\n311,CA2,20,R2\n,,,"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := readAll(t, strings.NewReader(tc.body), defaults)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.rejects) > 0 {
				t.Errorf("rejects = %v, want none", res.rejects)
			}
			if got, want := refs(res.rows), []string{"R1", "R2"}; !reflect.DeepEqual(got, want) {
				t.Errorf("rows = %q, want %q", got, want)
			}
		})
	}
	// A line with a space in it is a row (an invalid one), and so is a
	// record whose quoted cell holds a line of commas.
	res, err := readAll(t, strings.NewReader(head+"\n,,, \n311,\"CA1\n,,,\",10,R1\n"), defaults)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.order, []int{2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("records at lines %v, want %v", got, want)
	}
}

// TestReaderCoordinatesRequired: latitude and longitude are treated like
// RegistrationID: with no column and no default the file is refused up
// front, and an empty cell with no default rejects its row, instead of
// sending "" to the provider.
func TestReaderCoordinatesRequired(t *testing.T) {
	head := "operator,canumber,amount,referenceid"
	for _, tc := range []struct {
		name, in, want string
		opts           ReaderOptions
	}{
		{"no columns, no defaults", head + "\n311,CA1,10,R1\n", "latitude", ReaderOptions{RegistrationID: "R"}},
		{"no longitude column", head + ",latitude\n311,CA1,10,R1,28.6\n", "longitude", ReaderOptions{RegistrationID: "R"}},
		{"no latitude column, longitude default", head + "\n311,CA1,10,R1\n", "latitude", ReaderOptions{RegistrationID: "R", Longitude: "77.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, strings.NewReader(tc.in), tc.opts)
			var fe *FileError
			if !errors.As(err, &fe) || fe.Column != tc.want || !strings.Contains(fe.Reason, "--"+tc.want) {
				t.Errorf("err = %v, want a file error naming column %s and --%s", err, tc.want, tc.want)
			}
		})
	}
	res, err := readAll(t, strings.NewReader(head+"\n311,CA1,10,R1\n"), ReaderOptions{RegistrationID: "R", Latitude: "28.6", Longitude: "77.2"})
	if err != nil || len(res.rows) != 1 || res.rows[0].Request.Latitude != "28.6" || res.rows[0].Request.Longitude != "77.2" {
		t.Errorf("defaults from flags: rows %+v, err %v", res.rows, err)
	}
	in := head + ",latitude,longitude\n311,CA1,10,R1,28.6,77.2\n311,CA2,10,R2,,77.2\n311,CA3,10,R3,28.6,\n"
	res, err = readAll(t, strings.NewReader(in), ReaderOptions{RegistrationID: "R"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.rows) != 1 || res.rows[0].Line != 2 {
		t.Errorf("rows = %+v, want line 2 only", res.rows)
	}
	if len(res.rejects) != 2 {
		t.Fatalf("rejects = %v, want lines 3 and 4", res.rejects)
	}
	for i, col := range []string{"latitude", "longitude"} {
		re := res.rejects[i]
		if re.Line != 3+i || re.Column != col || re.Code != CodeMissingValue || !strings.Contains(re.Reason, "--"+col) {
			t.Errorf("reject %d = %v, want line %d %s missing, naming --%s", i, re, 3+i, col, col)
		}
	}
	res, err = readAll(t, strings.NewReader(in), ReaderOptions{RegistrationID: "R", Latitude: "1", Longitude: "2"})
	if err != nil || len(res.rows) != 3 || res.rows[1].Request.Latitude != "1" || res.rows[2].Request.Longitude != "2" {
		t.Errorf("empty cells take the defaults: rows %+v, err %v", res.rows, err)
	}
	if _, err := NewReader(strings.NewReader(in), ReaderOptions{RegistrationID: "R", Latitude: "north", Longitude: "2"}); err == nil ||
		!strings.Contains(err.Error(), "--latitude") {
		t.Errorf("a default that is not a number: err %v, want it refused naming --latitude", err)
	}
}
