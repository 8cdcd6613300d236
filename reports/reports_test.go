package reports

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/aopbatch/aopbatch/ledger"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/reports/golden")

const testdataDir = "../testdata/reports"

// built returns the fixture's summary, reconciled with statement.csv when
// reconcile is set, and the reports written into a fresh directory.
func built(t *testing.T, f *fixture, mask, reconcile bool) (*Summary, string) {
	t.Helper()
	ctx := context.Background()
	s, err := Build(ctx, f.l, f.b, f.options(mask))
	if err != nil {
		t.Fatal(err)
	}
	if reconcile {
		st, err := ReadStatementFile(filepath.Join(testdataDir, "statement.csv"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Reconcile(ctx, f.l, st); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := Write(ctx, f.l, dir, s, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetrics(filepath.Join(dir, "aopbatch.prom"), s); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestGolden(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, false, true)
	for _, name := range []string{FileJSON, FileRows, FileRejects, FileReconciliation, FileMarkdown, FileHTML, "aopbatch.prom"} {
		t.Run(name, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(testdataDir, "golden", name)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./reports -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run go test ./reports -update after checking the change):\n%s", name, golden, firstDiff(got, want))
			}
		})
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return "line " + itoa(int64(i+1)) + ":\n got: " + a + "\nwant: " + b
		}
	}
	return ""
}

func TestFilesAndModes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, err := Build(ctx, f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	paths, err := Write(ctx, f.l, dir, s, []string{"md,json"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(paths), 2; got != want {
		t.Fatalf("wrote %v, want %d files", paths, want)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode %v, want 0700", got)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want 2 (no temporary files left)", len(entries))
	}
	if _, err := Write(ctx, f.l, dir, s, []string{"pdf"}); err == nil {
		t.Error("format pdf: no error")
	}
}

func TestReportJSONKeys(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, false, false)
	raw, err := os.ReadFile(filepath.Join(dir, FileJSON))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	m = map[string]map[string]any{}
	for _, k := range []string{"counts", "amounts_paise", "reconciliation", "at_risk"} {
		var v map[string]any
		if err := json.Unmarshal(top[k], &v); err != nil {
			t.Fatalf("key %s: %v", k, err)
		}
		m[k] = v
	}
	for _, k := range []string{"total", "success", "failed", "refunded", "rejected", "conflict", "pending", "duplicate", "unknown", "held", "queued"} {
		if _, ok := m["counts"][k]; !ok {
			t.Errorf("counts.%s missing", k)
		}
		if _, ok := m["amounts_paise"][k]; !ok {
			t.Errorf("amounts_paise.%s missing", k)
		}
	}
	for _, k := range []string{"matched", "amount_mismatch", "status_mismatch", "missing_in_statement", "missing_in_ledger", "duplicated_in_statement"} {
		if _, ok := m["reconciliation"][k]; !ok {
			t.Errorf("reconciliation.%s missing", k)
		}
	}
	if got, want := string(top["batch"]), `"b1"`; got != want {
		t.Errorf("batch = %s, want %s", got, want)
	}
	if got, want := m["counts"]["total"], float64(len(fixtureRows)); got != want {
		t.Errorf("counts.total = %v, want %v", got, want)
	}
}

func TestAtRisk(t *testing.T) {
	f := newFixture(t)
	s, err := Build(context.Background(), f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	// pending 7.00, duplicate 12.00, unknown 9.99, held 20.00, queued 15.00, inflight 3.00
	if got, want := s.AtRisk.Rows(), int64(6); got != want {
		t.Errorf("at risk rows = %d, want %d", got, want)
	}
	if got, want := s.AtRisk.OutcomeUnknown.AmountPaise+s.AtRisk.NotYetSent.AmountPaise, int64(700+1200+999+2000+1500+300); got != want {
		t.Errorf("at risk amount = %d, want %d", got, want)
	}
	// Held and queued were never sent: unresolved since the batch was
	// created (t0), two hours before the report.
	if got, want := s.AtRisk.NotYetSent.OldestSeconds, int64(7200); got != want {
		t.Errorf("oldest = %d, want %d", got, want)
	}
	byRef := map[string]AtRiskRow{}
	for _, r := range append(s.AtRisk.OutcomeUnknown.Listed, s.AtRisk.NotYetSent.Listed...) {
		byRef[r.ReferenceID] = r
	}
	if got, want := byRef["REF006"].UnresolvedSeconds, int64(7200-64); got != want {
		t.Errorf("REF006 unresolved for %d s, want %d (since first sent)", got, want)
	}
	if got := s.AtRisk.NotYetSent.Ageing[1]; got.Rows != 2 || got.AmountPaise != 3500 {
		t.Errorf("ageing 1 to 24 hours: %+v, want the 2 unsent rows", got)
	}
	if s.Complete {
		t.Error("complete with rows at risk")
	}
	for _, name := range []string{FileMarkdown, FileHTML} {
		_, dir := built(t, f, false, false)
		b, _ := os.ReadFile(filepath.Join(dir, name))
		i := strings.Index(string(b), "Money at risk")
		if i < 0 || i > 3000 {
			t.Errorf("%s: money at risk not on the first screen (at %d)", name, i)
		}
	}
}

// wantCategory is the classification of every ledger row and statement
// line of the fixture (see testdata/reports/statement.csv).
var wantCategory = map[string]Category{
	"2":   Matched,               // success vs 1
	"3":   Matched,               // success vs 1
	"4":   Matched,               // failed vs 0
	"5":   Matched,               // refunded vs 1+refunded
	"6":   Matched,               // pending vs 2
	"7":   StatusMismatch,        // duplicate: unresolved here
	"8":   StatusMismatch,        // unknown: unresolved here
	"9":   NotSent,               // held
	"10":  NotSent,               // queued
	"11":  MissingInStatement,    // inflight, not on the statement
	"12":  NotSent,               // rejected
	"13":  NotSent,               // rejected
	"14":  NotSent,               // conflict
	"15":  NotSent,               // rejected: repeats line 2
	"16":  AmountMismatch,        // 40.00 vs 45.00
	"17":  StatusMismatch,        // we success, they failed
	"18":  StatusMismatch,        // we failed, they success
	"19":  MissingInStatement,    // success, not on the statement
	"20":  FailedNotInStatement,  // failed (operator down), not on the statement
	"s12": DuplicatedInStatement, // REF002 again
	"s13": MissingInLedger,       // REF-GHOST
	"s14": InOtherBatch,          // REF-ELSEWHERE
}

func TestReconcile(t *testing.T) {
	f := newFixture(t)
	s, dir := built(t, f, false, true)
	r := s.Reconciliation
	got := map[Category]int64{
		Matched: r.Matched, AmountMismatch: r.AmountMismatch, StatusMismatch: r.StatusMismatch,
		MissingInStatement: r.MissingInStatement, MissingInLedger: r.MissingInLedger, FailedNotInStatement: r.FailedNotInStatement,
		DuplicatedInStatement: r.DuplicatedInStatement, NotSent: r.NotSent, InOtherBatch: r.InOtherBatch,
	}
	want := map[Category]int64{}
	for _, c := range wantCategory {
		want[c]++
	}
	for c := range want {
		if got[c] != want[c] {
			t.Errorf("%s = %d, want %d", c, got[c], want[c])
		}
	}
	if sum := r.Matched + r.AmountMismatch + r.StatusMismatch + r.MissingInStatement + r.FailedNotInStatement + r.NotSent; sum != s.Counts.Total {
		t.Errorf("ledger-side categories add to %d, want counts.total %d", sum, s.Counts.Total)
	}
	ct := r.ControlTotals
	if got, want := ct.LedgerSuccessPaise, int64(1000+2550+4000+5000+6000); got != want {
		t.Errorf("ledger success = %d, want %d", got, want)
	}
	// Every line charging a refid of this batch or of none: REF002 10.00
	// (twice: a double charge), REF003 25.50, REF007 12.00, REF016 45.00,
	// REF018 8.00, REF-GHOST 99.00.
	if got, want := ct.StatementSuccessPaise, int64(1000+1000+2550+1200+4500+800+9900); got != want {
		t.Errorf("statement success = %d, want %d", got, want)
	}
	if got, want := ct.DifferencePaise, ct.StatementSuccessPaise-ct.LedgerSuccessPaise; got != want {
		t.Errorf("difference = %d, want %d", got, want)
	}
	if !s.Mismatched() {
		t.Error("Mismatched() = false")
	}

	recs := readCSV(t, filepath.Join(dir, FileReconciliation))
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		key := rec[1]
		if key == "" {
			key = "s" + rec[6]
		}
		if seen[key] {
			t.Errorf("%s classified twice", key)
		}
		seen[key] = true
		if got, want := Category(rec[0]), wantCategory[key]; got != want {
			t.Errorf("%s (%s): %s, want %s (note %q)", key, rec[2], got, want, rec[10])
		}
	}
	for key := range wantCategory {
		if !seen[key] {
			t.Errorf("%s not in reconciliation.csv", key)
		}
	}
	for _, d := range r.Discrepancies {
		if d.Line == 8 && !strings.Contains(d.Note, "run aopbatch resolve") {
			t.Errorf("unknown row note %q does not say to resolve", d.Note)
		}
	}
}

func TestReconcileAllMatched(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s, err := Build(ctx, f.l, f.b, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	if s.Mismatched() {
		t.Error("Mismatched() without a statement")
	}
	// A statement naming only settled rows, correctly, with its own headers.
	cols, err := ParseStatementColumns("refid=Reference No,txnid=Txn,amount=Amt (Rs),status=Result,refunded=Reversed")
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatementFile(filepath.Join(testdataDir, "statement-mapped.csv"), cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(ctx, f.l, st); err != nil {
		t.Fatal(err)
	}
	r := s.Reconciliation
	if r.Matched != 4 || r.AmountMismatch != 0 || r.StatusMismatch != 0 {
		t.Errorf("matched %d, amount %d, status %d; want 4, 0, 0", r.Matched, r.AmountMismatch, r.StatusMismatch)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

func TestFormulaCellsAreInert(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, false, true)
	var buf bytes.Buffer
	if _, err := Export(context.Background(), f.l, f.b, ledger.StateSuccess, &buf, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	exported := filepath.Join(t.TempDir(), "export.csv")
	os.WriteFile(exported, buf.Bytes(), 0o600)
	hits := map[string]int{}
	for _, p := range []string{filepath.Join(dir, FileRows), filepath.Join(dir, FileRejects), filepath.Join(dir, FileReconciliation), exported} {
		for _, rec := range readCSV(t, p) {
			for _, c := range rec {
				if c == "" {
					continue
				}
				if strings.ContainsRune("=+-@\t\r", rune(c[0])) {
					t.Errorf("%s: cell %q is live", filepath.Base(p), c)
				}
				if strings.Contains(c, "HYPERLINK") {
					hits[filepath.Base(p)]++
					if c != "'"+hyperlink {
						t.Errorf("%s: cell %q, want %q", filepath.Base(p), c, "'"+hyperlink)
					}
				}
			}
		}
	}
	// rows.csv: canumber of lines 3 and 13, message of line 4; rejects.csv:
	// the raw canumber of line 13; the export: line 3's canumber.
	for name, want := range map[string]int{FileRows: 3, FileRejects: 1, "export.csv": 1} {
		if hits[name] != want {
			t.Errorf("%s: %d HYPERLINK cells, want %d", name, hits[name], want)
		}
	}
}

func TestTotalsMatchRowsCSV(t *testing.T) {
	f := newFixture(t)
	s, dir := built(t, f, false, false)
	recs := readCSV(t, filepath.Join(dir, FileRows))
	if got, want := strings.Join(recs[0], ","), strings.Join(RowsHeader, ","); got != want {
		t.Fatalf("header %s, want %s", got, want)
	}
	rows, paise := ByState{}, ByState{}
	for _, rec := range recs[1:] {
		st := ledger.State(rec[5])
		var p int64
		if rec[4] != "" {
			var err error
			if p, err = parseStatementRupees(rec[4]); err != nil {
				t.Fatalf("amount %q: %v", rec[4], err)
			}
		}
		rows.add(st, 1)
		paise.add(st, p)
	}
	if rows != s.Counts {
		t.Errorf("rows.csv counts %+v, report %+v", rows, s.Counts)
	}
	if paise != s.AmountsPaise {
		t.Errorf("rows.csv amounts %+v, report %+v", paise, s.AmountsPaise)
	}
	if got, want := int64(len(recs)-1), int64(len(fixtureRows)); got != want {
		t.Errorf("rows.csv has %d rows, want %d", got, want)
	}
}

func TestHTMLSelfContained(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, false, true)
	b, err := os.ReadFile(filepath.Join(dir, FileHTML))
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	var stack []string
	svgs := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report.html does not parse: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			name := strings.ToLower(tok.Name.Local)
			stack = append(stack, name)
			if name == "svg" {
				svgs++
			}
			if name == "script" || name == "link" || name == "img" || name == "iframe" {
				t.Errorf("element <%s> in a self-contained report", name)
			}
			for _, a := range tok.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Value))
				if n := strings.ToLower(a.Name.Local); n == "src" || n == "href" || strings.HasPrefix(n, "on") {
					t.Errorf("<%s %s=%q>", name, n, a.Value)
				}
				if strings.Contains(v, "http:") || strings.Contains(v, "https:") || strings.HasPrefix(v, "//") {
					t.Errorf("<%s %s=%q> points outside", name, a.Name.Local, a.Value)
				}
			}
		case xml.EndElement:
			name := strings.ToLower(tok.Name.Local)
			if len(stack) == 0 || stack[len(stack)-1] != name {
				t.Fatalf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1] == "style" && (strings.Contains(string(tok), "url(") || strings.Contains(string(tok), "@import")) {
				t.Error("style loads something")
			}
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements %v", stack)
	}
	if svgs < 3 {
		t.Errorf("%d <svg> charts, want 3 (states, operators, latency)", svgs)
	}
	if bytes.Contains(b, []byte(`<a `)) || bytes.Contains(b, []byte(hyperlink)) {
		t.Error("untrusted text not escaped")
	}
}

func TestMaskPII(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, true, true)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 7 {
		t.Fatalf("only %d files written", len(entries))
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range fullPII {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s contains %q", e.Name(), v)
			}
		}
	}
	recs := readCSV(t, filepath.Join(dir, FileRows))
	if got, want := recs[1][3], "XXXXXX4685"; got != want {
		t.Errorf("masked canumber %q, want %q", got, want)
	}
}

var metricLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)?\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)$`)

func TestMetricsFile(t *testing.T) {
	f := newFixture(t)
	_, dir := built(t, f, false, true)
	fh, err := os.Open(filepath.Join(dir, "aopbatch.prom"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	if got := st.Mode().Perm(); got != 0o644 {
		t.Errorf("metrics mode %v, want 0644", got)
	}
	sc := bufio.NewScanner(fh)
	n := 0
	names := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		if !metricLine.MatchString(line) {
			t.Errorf("not name{labels} value: %q", line)
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		n++
	}
	for _, want := range []string{"aopbatch_rows", "aopbatch_amount_paise", "aopbatch_reconciliation", "aopbatch_report_timestamp_seconds"} {
		if !names[want] {
			t.Errorf("no %s sample", want)
		}
	}
	if n < 20 {
		t.Errorf("%d samples", n)
	}
}

// The run's figures: a run that sent requests has its achieved rate and
// latency written; one that sent none (the 06:00 rerun of a batch the
// 02:00 run finished) has its counts, zero, and its configured rate, but
// no rate or latency it never measured: an alert on the achieved rate
// read 0 every morning.
func TestRunMetricsLeaveOutWhatWasNotMeasured(t *testing.T) {
	f := newFixture(t)
	s, _ := built(t, f, false, false)
	for _, tc := range []struct {
		name      string
		run       RunFigures
		want, not []string
	}{
		{"sent", RunFigures{ConfiguredRate: 20, AchievedRate: 19.5, SendSeconds: 2.1, Recharges: 40, LatencyP50: 0.02, LatencyP90: 0.03, LatencyP99: 0.05, PeakInFlight: 3, InFlightCap: 256},
			[]string{`aopbatch_run_rate_per_second{batch="b1",kind="achieved"} 19.5`, `aopbatch_run_latency_seconds{batch="b1",quantile="0.99"} 0.05`,
				`aopbatch_run_requests{batch="b1",kind="recharge"} 40`}, nil},
		{"sent nothing", RunFigures{ConfiguredRate: 20, SendSeconds: 0.004, InFlightCap: 256},
			[]string{`aopbatch_run_rate_per_second{batch="b1",kind="configured"} 20`, `aopbatch_run_requests{batch="b1",kind="recharge"} 0`,
				`aopbatch_run_requests{batch="b1",kind="status"} 0`, `aopbatch_run_in_flight{batch="b1",kind="cap"} 256`, `aopbatch_rows{batch="b1",state="success"} `},
			[]string{`kind="achieved"`, "aopbatch_run_latency_seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "aopbatch.prom")
			if err := WriteMetricsWithRun(path, s, tc.run); err != nil {
				t.Fatal(err)
			}
			prom := readFile(t, path)
			for _, w := range tc.want {
				if !strings.Contains(prom, w) {
					t.Errorf("metrics lack %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(prom, n) {
					t.Errorf("metrics hold %q", n)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(prom), "\n") {
				if !strings.HasPrefix(line, "# ") && !metricLine.MatchString(line) {
					t.Errorf("not name{labels} value: %q", line)
				}
			}
		})
	}
}

func TestExport(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var buf bytes.Buffer
	res, err := Export(ctx, f.l, f.b, ledger.StateFailed, &buf, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each row names the row it retries: a second file of them is refused.
	want := "operator,canumber,amount,referenceid,cellNumber,userName,retryof\n" +
		"312,MH01AB1234,5.00,,,,b1:4\n" +
		"311,DL01PQ8888,8.00,,,,b1:18\n" +
		"313,GJ05ZZ0020,25.00,,,,b1:20\n"
	if got := buf.String(); got != want {
		t.Errorf("export:\n%s\nwant:\n%s", got, want)
	}
	if res.Rows != 3 || !res.BlankedRefs || !res.RetryColumn {
		t.Errorf("result %+v", res)
	}
	buf.Reset()
	if _, err := Export(ctx, f.l, f.b, ledger.StateSuccess, &buf, ExportOptions{KeepRefs: true}); err != nil {
		t.Fatal(err)
	}
	// Paid rows are a list, not payments to make again: no retryof.
	if got, want := strings.Split(buf.String(), "\n")[:2], []string{"operator,canumber,amount,referenceid,cellNumber,userName",
		"311,DL12CB4685,10.00,REF002,9812300000,NITESH KUMAR SHARMA"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rebuilt from the request: %q, want %q", got, want)
	}
	buf.Reset()
	if _, err := Export(ctx, f.l, f.b, ledger.StateRejected, &buf, ExportOptions{KeepRefs: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Split(buf.String(), "\n")[1], "311,KA05XY9999,10.005,REF012,9876543210,RAVI KUMAR,b1:12"; got != want {
		t.Errorf("from the raw cells: %q, want %q", got, want)
	}
	if _, err := Export(ctx, f.l, f.b, ledger.State("gone"), &buf, ExportOptions{}); err == nil {
		t.Error("unknown state: no error")
	}
}

func TestTextSummary(t *testing.T) {
	f := newFixture(t)
	s, _ := built(t, f, false, true)
	got := s.TextSummary()
	for _, want := range []string{"batch b1: 19 rows", "at risk: outcome unknown 4 rows, ₹31.99", "not yet sent 2 rows, ₹35.00", "1 amount mismatch (₹40.00)",
		"difference +₹24.00 (statement minus ledger)", "net to recover +₹15.00", "to do: 1 row recorded failed (₹8.00)"} {
		if !strings.Contains(got, want) {
			t.Errorf("text summary lacks %q:\n%s", want, got)
		}
	}
}
